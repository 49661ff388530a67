"""Stream tokens: short-lived, signed permission to open one service's event stream.

A browser's EventSource cannot send an Authorization header, so the stream route also takes
a token in its URL. URLs end up in proxy logs and browser history, so that token is never
the access token: it is a JWT of its own kind (``typ: stream`` and an audience naming the
service's stream) that lives for a minute. PyJWT refuses a token carrying an audience to
any decode that does not ask for it, so an access-token check never accepts a stream token;
and an access token has no audience, so the stream-token check never accepts it.

It names the user, the user's token version and the access token it was obtained with, so
that the stream route can refuse it, at connect, for a user deactivated, re-passworded or
demoted since (version), or a session logged out (the access token's jti).
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from common.auth.security import TokenClaims
from common.db import utcnow
from common.models import Role
from common.settings import CommonSettings

STREAM_TOKEN_TYPE = "stream"  # noqa: S105 (a claim value, not a secret)
_REQUIRED = ["sub", "aud", "typ", "exp", "jti", "ver", "role", "acc"]


def audience(service: str) -> str:
    """The audience of one service's stream tokens: a token is good for that stream only."""
    return f"shop:events:{service}"


@dataclass(frozen=True)
class StreamToken:
    token: str
    expires_at: datetime


def create_stream_token(
    *, claims: TokenClaims, service: str, settings: CommonSettings
) -> StreamToken:
    """A stream token for the holder of ``claims`` (a checked access token) on ``service``."""
    now = utcnow()
    expires_at = now + timedelta(seconds=settings.stream_token_seconds)
    token = jwt.encode(
        {
            "sub": str(claims.user_id),
            "aud": audience(service),
            "typ": STREAM_TOKEN_TYPE,
            "role": claims.role.value,
            "ver": claims.version,
            "acc": claims.jti,  # the access token it came from: its logout ends this one too
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        },
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
    )
    return StreamToken(token=token, expires_at=expires_at)


def decode_stream_token(token: str, service: str, settings: CommonSettings) -> TokenClaims | None:
    """The claims to check the user by (those of the access token it came from), or None for
    anything but a genuine, unexpired stream token of this service."""
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            audience=audience(service),
            options={"require": _REQUIRED},
        )
        if payload["typ"] != STREAM_TOKEN_TYPE or not isinstance(payload["ver"], int):
            return None
        return TokenClaims(
            user_id=int(payload["sub"]),
            role=Role(payload["role"]),
            jti=str(payload["acc"]),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=UTC),
            version=payload["ver"],
        )
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
        return None
