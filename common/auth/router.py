"""Login, token refresh, logout, password change, the current user, and admin user
management."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from common.auth import service, throttle
from common.auth.dependencies import AdminUser, CurrentUser, SettingsDep
from common.auth.schemas import (
    LoginRequest,
    PasswordChange,
    RefreshRequest,
    TokenRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from common.db import SessionDep, retry_lock_conflicts
from common.errors import error_responses
from common.models import User
from common.pagination import Page, PageDep
from common.settings import CommonSettings

router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(401, 403))


def client_address(request: Request) -> str:
    """The caller's address (from X-Forwarded-For only when the peer is a trusted proxy:
    see SHOP_FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def _token_read(issued: service.IssuedTokens) -> TokenRead:
    return TokenRead(
        access_token=issued.access_token,
        expires_at=issued.claims.expires_at,
        refresh_token=issued.refresh_token,
        refresh_expires_at=issued.refresh_expires_at,
        user=UserRead.model_validate(issued.user),
    )


def _finish_login(
    sessions: sessionmaker[Session],
    admission: throttle.Admission,
    password: str,
    settings: CommonSettings,
) -> TokenRead:
    with sessions() as session:

        def log_in() -> TokenRead:
            issued = service.login(
                session=session, admission=admission, password=password, settings=settings
            )
            answer = _token_read(issued)
            session.commit()
            return answer

        # Its delete of the pair's failures may meet a concurrent attempt's locks.
        return retry_lock_conflicts(log_in, session=session)


async def _admitted(request: Request, settings: CommonSettings, account: str) -> throttle.Admission:
    """A password attempt on this account, recorded (or refused: 429) and waited for.
    Async, in a short transaction of its own: a slowed attempt waits without holding a
    worker thread or a database connection."""
    admission = await run_in_threadpool(
        throttle.admit,
        request.app.state.sessionmaker,
        account=account,
        client=client_address(request),
        settings=settings,
    )
    if admission.delay_seconds:
        await asyncio.sleep(admission.delay_seconds)
    return admission


async def _log_in(request: Request, settings: CommonSettings, body: LoginRequest) -> TokenRead:
    admission = await _admitted(request, settings, body.email)
    sessions = request.app.state.sessionmaker
    return await run_in_threadpool(_finish_login, sessions, admission, body.password, settings)


LOGIN_RESPONSES = error_responses(401, 422, 429)


@router.post(
    "/login",
    summary="Log in with email and password",
    response_model=TokenRead,
    responses=LOGIN_RESPONSES,
)
async def login(body: LoginRequest, request: Request, settings: SettingsDep) -> TokenRead:
    """Exchange credentials for a session: a short-lived bearer token and a refresh token.

    Repeated failures from one address on one account make that address wait (429 with
    Retry-After, the wait doubling); many failures on an account from anywhere only slow
    each attempt down, so the account's owner is never locked out."""
    return await _log_in(request, settings, body)


@router.post(
    "/token",
    summary="Log in (OAuth2 password form, used by Swagger's Authorize)",
    response_model=TokenRead,
    responses=LOGIN_RESPONSES,
)
async def login_with_form(
    request: Request,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=254, description="The user's email")],
    password: Annotated[str, Form(min_length=1, max_length=128)],
) -> TokenRead:
    """The same as /login, as an OAuth2 password-grant form."""
    try:
        body = LoginRequest(email=username, password=password)
    except ValidationError as exc:
        names = {"email": "username"}
        raise RequestValidationError(
            [
                {**error, "loc": ("body", *(names.get(str(p), p) for p in error["loc"]))}
                for error in exc.errors(include_url=False)
            ]
        ) from exc
    return await _log_in(request, settings, body)


@router.post(
    "/refresh",
    summary="Renew a session with its refresh token",
    response_model=TokenRead,
    responses=error_responses(401, 422),
)
def refresh_session(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenRead:
    """A new access token and refresh token for this one, which is used up. Sending a used
    refresh token again ends its whole session (someone else holds a copy): 401."""
    try:
        issued = service.refresh(
            session=session, refresh_token=body.refresh_token, settings=settings
        )
    except service.RefreshTokenReused:
        session.commit()  # keep the revocation the error answers with
        raise
    return _token_read(issued)


@router.post(
    "/password",
    summary="Change my password",
    response_model=TokenRead,
    responses=error_responses(401, 422, 429),
)
async def change_password(
    body: PasswordChange, principal: CurrentUser, request: Request, settings: SettingsDep
) -> TokenRead:
    """Needs the current password (throttled like a login). Every token of yours, on every
    device, stops working; the answer is a new session for this one."""
    admission = await _admitted(request, settings, principal.user.email)
    sessions = request.app.state.sessionmaker

    def change() -> TokenRead:
        with sessions() as session:
            issued = service.change_password(
                session=session,
                user_id=principal.id,
                admission=admission,
                current_password=body.current_password,
                new_password=body.new_password,
                settings=settings,
            )
            answer = _token_read(issued)
            session.commit()
        return answer

    return await run_in_threadpool(change)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out",
    responses=error_responses(401),
)
def logout(principal: CurrentUser, session: SessionDep) -> None:
    """End this session: the token used for this call and its refresh tokens are refused
    from now on."""
    service.logout(session=session, claims=principal.claims)


@router.get("/me", summary="The current user", responses=error_responses(401))
def get_current_user(principal: CurrentUser, session: SessionDep) -> UserRead:
    """Who the token belongs to, and their role."""
    return UserRead.model_validate(session.get_one(User, principal.id))


@users_router.get("", summary="List users")
def list_users(_admin: AdminUser, session: SessionDep, page: PageDep) -> Page[UserRead]:
    """All users, oldest first."""
    return Page.of(service.list_users(session=session, page=page).map(UserRead.model_validate))


@users_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses=error_responses(409, 422),
)
def create_user(body: UserCreate, admin: AdminUser, session: SessionDep) -> UserRead:
    """Register a user with a role; the email must be unused."""
    user = service.create_user(
        session=session, data=body, actor_id=admin.id, actor_email=admin.user.email
    )
    return UserRead.model_validate(user)


@users_router.get("/{user_id}", summary="Get a user", responses=error_responses(404))
def get_user(user_id: int, _admin: AdminUser, session: SessionDep) -> UserRead:
    """One user by id."""
    return UserRead.model_validate(service.get_user(session=session, user_id=user_id))


@users_router.patch("/{user_id}", summary="Update a user", responses=error_responses(404, 409, 422))
def update_user(user_id: int, body: UserUpdate, admin: AdminUser, session: SessionDep) -> UserRead:
    """Change name, password, role or active flag; the last admin cannot lose admin rights.
    Setting a password (an admin's reset), a role or the active flag revokes every token the
    user holds."""
    user = service.update_user(
        session=session,
        user_id=user_id,
        data=body,
        actor_id=admin.id,
        actor_email=admin.user.email,
    )
    return UserRead.model_validate(user)
