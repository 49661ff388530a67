"""Named dependencies: the settings, the current user, and a required role."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import Connection, Row, Select, bindparam, outerjoin, select
from sqlalchemy.orm import Session

from common.auth.security import TokenClaims, decode_access_token, decode_service_token
from common.db import SessionDep, connection_of
from common.errors import Forbidden, Unauthorized
from common.models import RevokedToken, Role, User
from common.settings import CommonSettings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_settings(request: Request) -> CommonSettings:
    settings: CommonSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[CommonSettings, Depends(get_settings)]


@dataclass(frozen=True)
class AuthenticatedUser:
    """A user as authentication checks them: the columns every request needs."""

    id: int
    email: str
    role: Role


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user as stored and the token they used."""

    user: AuthenticatedUser
    claims: TokenClaims

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def role(self) -> Role:
        return self.user.role


async def get_claims(
    settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> TokenClaims:
    """The bearer token's claims, checked without the database; 401 when missing or bad."""
    if not token:
        raise Unauthorized("Not authenticated: send 'Authorization: Bearer <token>'")
    claims = decode_access_token(token, settings)
    if claims is None:
        raise Unauthorized("Token is invalid or expired; log in again")
    return claims


BearerClaims = Annotated[TokenClaims, Depends(get_claims)]


def caller_query(*more: Any) -> Select[Any]:
    """One round trip: the user's columns, and whether this token was revoked (``jti``, NULL
    if not), with ``more`` columns a route reads in the same statement; bound by ``user_id``
    and ``jti``. Columns, not the entity: it runs on every request (build it once)."""
    source = outerjoin(User, RevokedToken, RevokedToken.jti == bindparam("jti"))
    columns = (User.id, User.email, User.role, User.is_active, User.token_version, RevokedToken.jti)
    return select(*columns, *more).select_from(source).where(User.id == bindparam("user_id"))


_CALLER = caller_query()


def authenticate(db: Session | Connection, claims: TokenClaims) -> AuthenticatedUser:
    """The token's user, if it is active and the token was not revoked (by logout, or by a
    password change, deactivation or role change since it was signed); else 401."""
    parameters = {"jti": claims.jti, "user_id": claims.user_id}
    found = connection_of(db).execute(_CALLER, parameters).first()
    return check_caller(found, claims)


def check_caller(found: Row[Any] | None, claims: TokenClaims) -> AuthenticatedUser:
    """``authenticate``'s checks of a row of ``caller_query``."""
    if found is not None and found.jti is not None:
        raise Unauthorized("Token was revoked by logout; log in again")
    if found is None or not found.is_active:
        raise Unauthorized("User is inactive or no longer exists")
    if found.token_version != claims.version:
        raise Unauthorized(
            "Token was revoked by a change to this account (password, role or status); log in again"
        )
    return AuthenticatedUser(id=found.id, email=found.email, role=found.role)


def get_principal(session: SessionDep, claims: BearerClaims) -> Principal:
    """The authenticated caller; 401 for a missing, bad, expired or revoked token."""
    user = authenticate(session, claims)
    # End this read now: FastAPI runs the route in another worker-thread hop, and a request
    # holding a pooled connection while it waits for a thread can starve the pool under load
    # (on SQLite it would also hold the write lock). The route's work starts a fresh transaction.
    session.commit()
    return Principal(user=user, claims=claims)


CurrentUser = Annotated[Principal, Depends(get_principal)]


def require_role(role: Role, *allowed: Role) -> None:
    """403 unless ``role`` is one of the allowed ones (admin always is)."""
    if role is not Role.ADMIN and role not in allowed:
        names = ", ".join(sorted(r.value for r in {*allowed, Role.ADMIN}))
        raise Forbidden(f"Role {role.value!r} may not do this; requires one of: {names}")


class RequireRole:
    """Dependency allowing the listed roles; admin is always allowed."""

    def __init__(self, *roles: str) -> None:
        self.roles = {Role(r) for r in roles} | {Role.ADMIN}

    async def __call__(self, principal: CurrentUser) -> Principal:
        require_role(principal.role, *self.roles)
        return principal


class RequireClaimedRole:
    """RequireRole for routes that check the user in their own first transaction: the
    token's role claim is checked here, without the database, so a caller whose token does
    not even claim the role is refused before the body is looked at; the route then checks
    the user as stored (see authenticate and require_role)."""

    def __init__(self, *roles: str) -> None:
        self.roles = [Role(r) for r in roles]

    async def __call__(self, claims: BearerClaims) -> TokenClaims:
        require_role(claims.role, *self.roles)
        return claims


ManagerUser = Annotated[Principal, Depends(RequireRole("manager"))]
ManagerClaims = Annotated[TokenClaims, Depends(RequireClaimedRole("manager"))]
AdminUser = Annotated[Principal, Depends(RequireRole("admin"))]


class RequireService:
    """Dependency for service-to-service routes: only a token naming one of these services
    passes (401 without a valid token, 403 for any person's token, an admin's included)."""

    def __init__(self, *services: str) -> None:
        self.services = set(services)

    async def __call__(
        self, settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
    ) -> str:
        if not token:
            raise Unauthorized("Not authenticated: this route takes a service token")
        service = decode_service_token(token, settings)
        if service is None:
            if decode_access_token(token, settings) is not None:
                raise Forbidden("Only a service may call this route, no person's token")
            raise Unauthorized("Token is invalid or expired")
        if service not in self.services:
            raise Forbidden(f"Service {service!r} may not call this route")
        return service


SalesServiceCaller = Annotated[str, Depends(RequireService("sales_service"))]


async def get_reader(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> str:
    """A signed-in person or a service; names who (``user:<id>`` or ``service:<name>``)."""
    if token and (service := decode_service_token(token, settings)) is not None:
        return f"service:{service}"
    claims = await get_claims(settings, token)
    sessions = request.app.state.sessionmaker
    user = await run_in_threadpool(_authenticate_alone, sessions, claims)
    return f"user:{user.id}"


def _authenticate_alone(sessions: Any, claims: TokenClaims) -> AuthenticatedUser:
    with sessions() as session:
        return authenticate(session, claims)


PersonOrService = Annotated[str, Depends(get_reader)]
