"""Named dependencies: the settings, the current user, and a required role."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select

from common.auth.security import TokenClaims, decode_access_token
from common.db import SessionDep
from common.errors import Forbidden, Unauthorized
from common.models import RevokedToken, Role, User
from common.settings import CommonSettings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_settings(request: Request) -> CommonSettings:
    settings: CommonSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[CommonSettings, Depends(get_settings)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user row and the token they used."""

    user: User
    claims: TokenClaims

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def role(self) -> Role:
        return self.user.role


def get_principal(
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    """The authenticated caller; 401 for a missing, bad, expired or revoked token."""
    if not token:
        raise Unauthorized("Not authenticated: send 'Authorization: Bearer <token>'")
    claims = decode_access_token(token, settings)
    if claims is None:
        raise Unauthorized("Token is invalid or expired; log in again")
    # One round trip: the user, and whether this token was revoked (a NULL jti if not).
    found = session.execute(
        select(User, RevokedToken.jti)
        .outerjoin(RevokedToken, RevokedToken.jti == claims.jti)
        .where(User.id == claims.user_id)
    ).first()
    if found is not None and found.jti is not None:
        raise Unauthorized("Token was revoked by logout; log in again")
    user = found.User if found is not None else None
    if user is None or not user.is_active:
        raise Unauthorized("User is inactive or no longer exists")
    # End this read now: FastAPI runs the route in another worker-thread hop, and a request
    # holding a pooled connection while it waits for a thread can starve the pool under load
    # (on SQLite it would also hold the write lock). The route's work starts a fresh transaction.
    session.commit()
    return Principal(user=user, claims=claims)


CurrentUser = Annotated[Principal, Depends(get_principal)]


class RequireRole:
    """Dependency allowing the listed roles; admin is always allowed."""

    def __init__(self, *roles: str) -> None:
        self.roles = {Role(r) for r in roles} | {Role.ADMIN}

    async def __call__(self, principal: CurrentUser) -> Principal:
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise Forbidden(
                f"Role {principal.role.value!r} may not do this; requires one of: {allowed}"
            )
        return principal


ManagerUser = Annotated[Principal, Depends(RequireRole("manager"))]
AdminUser = Annotated[Principal, Depends(RequireRole("admin"))]
