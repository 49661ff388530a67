"""Password hashing (argon2) and JWT access tokens."""

import functools
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.db import utcnow
from common.models import Role
from common.settings import CommonSettings

_hasher = PasswordHasher()
# Verifying against this keeps the time of "no such user" equal to "wrong password".
_DUMMY_HASH = _hasher.hash("timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """True when ``password`` matches; spends the same time when there is no hash to check."""
    try:
        return _hasher.verify(hashed or _DUMMY_HASH, password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    role: Role
    jti: str
    expires_at: datetime
    # The user's token_version when signed: a token of an older version is refused.
    version: int = 0
    # The refresh-token family (login session) it was issued in; logout ends the family.
    family: str = ""
    # The user's email when signed, so a record made with the token can say who made it
    # without reading the user (the sale path reads no user).
    email: str | None = None


def create_access_token(
    *,
    user_id: int,
    role: Role,
    settings: CommonSettings,
    version: int = 0,
    family: str = "",
    email: str | None = None,
) -> tuple[str, TokenClaims]:
    """Sign a token for the user; returns it with its claims (the jti is what logout revokes)."""
    now = utcnow()
    claims = TokenClaims(
        user_id=user_id,
        role=role,
        jti=uuid.uuid4().hex,
        expires_at=now + timedelta(minutes=settings.access_token_minutes),
        version=version,
        family=family,
        email=email,
    )
    token = jwt.encode(
        {
            **({"email": email} if email else {}),
            "sub": str(user_id),
            "role": role.value,
            "jti": claims.jti,
            "ver": version,
            "fam": family,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        },
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
    )
    return token, claims


@functools.lru_cache(maxsize=4096)
def _verified(token: str, secret: str, algorithm: str, required: tuple[str, ...]) -> Any:
    """A token's payload once its signature is checked (None if it fails), remembered: a
    client sends the same token with every request until it expires, and checking the
    signature again each time was a measurable part of a request's CPU. Expiry is not
    checked here but by every caller, on every use (see _live)."""
    try:
        return jwt.decode(
            token,
            secret,
            algorithms=[algorithm],
            options={"require": list(required), "verify_exp": False},
        )
    except jwt.PyJWTError:
        return None


def _live(token: str, settings: CommonSettings, required: tuple[str, ...]) -> Any:
    """The payload of a genuine token that has not expired yet, else None."""
    payload = _verified(
        token, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm, required
    )
    if payload is None:
        return None
    expires = payload.get("exp")
    if not isinstance(expires, int | float) or expires <= time.time():
        return None
    return payload


def decode_access_token(token: str, settings: CommonSettings) -> TokenClaims | None:
    """The token's claims, or None when it is malformed, forged or expired."""
    try:
        payload = _live(token, settings, ("sub", "exp", "jti", "role", "ver"))
        if payload is None or not isinstance(payload["ver"], int):
            return None
        return TokenClaims(
            user_id=int(payload["sub"]),
            role=Role(payload["role"]),
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=utcnow().tzinfo),
            version=payload["ver"],
            family=str(payload.get("fam") or ""),
            email=payload.get("email") if isinstance(payload.get("email"), str) else None,
        )
    except (jwt.PyJWTError, ValueError, KeyError, OverflowError):
        return None


# --- service identities: one service calling another, with no person's token --------------

SERVICE_TOKEN_MINUTES = 10


def create_service_token(service: str, settings: CommonSettings) -> tuple[str, datetime]:
    """A short-lived token naming a service (signed with the shared secret, so only the
    services can mint one); no user token can pass for it, nor it for a user token."""
    now = utcnow()
    expires_at = now + timedelta(minutes=SERVICE_TOKEN_MINUTES)
    token = jwt.encode(
        {
            "sub": f"service:{service}",
            "svc": service,
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        },
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
    )
    return token, expires_at


def decode_service_token(token: str, settings: CommonSettings) -> str | None:
    """The service a token names, or None when it is no valid service token."""
    payload = _live(token, settings, ("sub", "exp", "svc"))
    if payload is None:
        return None
    service = payload.get("svc")
    return service if isinstance(service, str) and payload["sub"] == f"service:{service}" else None


class ServiceCredential:
    """A service's own token, minted on first use and again when less than half its life is
    left (so a call never carries one about to expire)."""

    def __init__(self, service: str, settings: CommonSettings) -> None:
        self.service = service
        self.settings = settings
        self._token = ""
        self._renew_at = utcnow()

    def token(self) -> str:
        now = utcnow()
        if not self._token or now >= self._renew_at:
            self._token, expires_at = create_service_token(self.service, self.settings)
            self._renew_at = now + (expires_at - now) / 2
        return self._token
