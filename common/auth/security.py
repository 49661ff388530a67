"""Password hashing (argon2) and JWT access tokens."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

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


def create_access_token(
    *, user_id: int, role: Role, settings: CommonSettings
) -> tuple[str, TokenClaims]:
    """Sign a token for the user; returns it with its claims (the jti is what logout revokes)."""
    now = utcnow()
    claims = TokenClaims(
        user_id=user_id,
        role=role,
        jti=uuid.uuid4().hex,
        expires_at=now + timedelta(minutes=settings.access_token_minutes),
    )
    token = jwt.encode(
        {
            "sub": str(user_id),
            "role": role.value,
            "jti": claims.jti,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        },
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
    )
    return token, claims


def decode_access_token(token: str, settings: CommonSettings) -> TokenClaims | None:
    """The token's claims, or None when it is malformed, forged or expired."""
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "exp", "jti", "role"]},
        )
        return TokenClaims(
            user_id=int(payload["sub"]),
            role=Role(payload["role"]),
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=utcnow().tzinfo),
        )
    except (jwt.PyJWTError, ValueError, KeyError):
        return None
