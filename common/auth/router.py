"""Login, logout, the current user, and admin user management."""

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import select

from common.auth import service
from common.auth.dependencies import AdminUser, CurrentUser, SettingsDep
from common.auth.schemas import LoginRequest, TokenRead, UserCreate, UserRead, UserUpdate
from common.db import SessionDep
from common.errors import error_responses
from common.models import User
from common.pagination import Page, PageDep, paginate

router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(401, 403))


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _token_answer(
    request: Request, session: SessionDep, settings: SettingsDep, email: str, password: str
) -> TokenRead | JSONResponse:
    try:
        token, claims, user = service.login(
            session=session,
            email=email,
            password=password,
            client=_client_address(request),
            settings=settings,
        )
    except service.InvalidCredentials as exc:
        # Answered, not raised: raising would roll back the recorded failed attempt.
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
    return TokenRead(
        access_token=token, expires_at=claims.expires_at, user=UserRead.model_validate(user)
    )


@router.post(
    "/login",
    summary="Log in with email and password",
    response_model=TokenRead,
    responses=error_responses(401, 422, 429),
)
def login(
    body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenRead | JSONResponse:
    """Exchange credentials for a bearer token. Repeated failures are throttled (429)."""
    return _token_answer(request, session, settings, body.email, body.password)


@router.post(
    "/token",
    summary="Log in (OAuth2 password form, used by Swagger's Authorize)",
    response_model=TokenRead,
    responses=error_responses(401, 422, 429),
)
def token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(description="The user's email")],
    password: Annotated[str, Form()],
) -> TokenRead | JSONResponse:
    """The same as /login, as an OAuth2 password-grant form."""
    body = LoginRequest(email=username, password=password)
    return _token_answer(request, session, settings, body.email, body.password)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out",
    responses=error_responses(401),
)
def logout(principal: CurrentUser, session: SessionDep) -> None:
    """Revoke the token used for this call; it is refused from now on."""
    service.logout(session=session, claims=principal.claims)


@router.get("/me", summary="The current user", responses=error_responses(401))
def me(principal: CurrentUser, session: SessionDep) -> UserRead:
    """Who the token belongs to, and their role."""
    return UserRead.model_validate(session.get_one(User, principal.id))


@users_router.get("", summary="List users")
def list_users(_admin: AdminUser, session: SessionDep, page: PageDep) -> Page[UserRead]:
    """All users, oldest first."""
    rows, total = paginate(session, select(User), page, [User.id.asc()])
    return Page(
        items=[UserRead.model_validate(r[0]) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@users_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses=error_responses(409, 422),
)
def create_user(body: UserCreate, _admin: AdminUser, session: SessionDep) -> UserRead:
    """Register a user with a role; the email must be unused."""
    return UserRead.model_validate(service.create_user(session=session, data=body))


@users_router.get("/{user_id}", summary="Get a user", responses=error_responses(404))
def get_user(user_id: int, _admin: AdminUser, session: SessionDep) -> UserRead:
    """One user by id."""
    return UserRead.model_validate(service.get_user(session=session, user_id=user_id))


@users_router.patch("/{user_id}", summary="Update a user", responses=error_responses(404, 409, 422))
def update_user(user_id: int, body: UserUpdate, _admin: AdminUser, session: SessionDep) -> UserRead:
    """Change name, password, role or active flag; the last admin cannot lose admin rights."""
    return UserRead.model_validate(service.update_user(session=session, user_id=user_id, data=body))
