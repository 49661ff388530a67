"""Login with throttling, logout, and user management rules."""

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.auth.schemas import UserCreate, UserUpdate
from common.auth.security import TokenClaims, create_access_token, hash_password, verify_password
from common.db import utcnow
from common.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from common.models import LoginAttempt, RevokedToken, Role, User
from common.settings import CommonSettings


def _check_throttle(
    *, session: Session, account: str, client: str, settings: CommonSettings
) -> None:
    """429 when this account or this client address has failed too often in the window."""
    since = utcnow() - timedelta(seconds=settings.login_window_seconds)
    for column, value, limit, what in (
        (LoginAttempt.account, account, settings.login_max_failures_per_account, "this account"),
        (LoginAttempt.client, client, settings.login_max_failures_per_client, "this address"),
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(LoginAttempt.attempted_at)).where(
                column == value, LoginAttempt.attempted_at >= since
            )
        ).one()
        if count >= limit and oldest is not None:
            retry = max(1, int((oldest - since).total_seconds()) + 1)
            raise TooManyRequests(
                f"Too many failed logins for {what}; try again in {retry} seconds",
                retry_after=retry,
            )


class InvalidCredentials(Unauthorized):
    """Wrong email or password. Its attempt row is in the session: the caller must commit it."""


def login(
    *,
    session: Session,
    email: str,
    password: str,
    client: str,
    settings: CommonSettings,
) -> tuple[str, TokenClaims, User]:
    """Check the credentials and sign a token.

    A failure adds its attempt to the session and raises InvalidCredentials; the caller
    answers 401 without rolling back, so the attempt counts towards the throttle.
    """
    account = email.strip().lower()
    _check_throttle(session=session, account=account, client=client, settings=settings)
    user = session.scalar(select(User).where(User.email == account))
    ok = verify_password(password, user.hashed_password if user else None)
    if not ok or user is None or not user.is_active:
        session.add(LoginAttempt(account=account, client=client))
        session.execute(
            delete(LoginAttempt).where(
                LoginAttempt.account == account,
                LoginAttempt.attempted_at
                < utcnow() - timedelta(seconds=settings.login_window_seconds),
            )
        )
        session.flush()
        raise InvalidCredentials("Incorrect email or password")
    session.execute(delete(LoginAttempt).where(LoginAttempt.account == account))
    token, claims = create_access_token(user_id=user.id, role=user.role, settings=settings)
    return token, claims, user


def logout(*, session: Session, claims: TokenClaims) -> None:
    """Revoke this token until it would have expired; logging out twice is harmless."""
    if session.get(RevokedToken, claims.jti) is None:
        session.add(RevokedToken(jti=claims.jti, expires_at=claims.expires_at))
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))


def get_user(*, session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found", resource="user", id=user_id)
    return user


def create_user(*, session: Session, data: UserCreate) -> User:
    if session.scalar(select(User.id).where(User.email == data.email)) is not None:
        raise Conflict(f"A user with email {data.email!r} already exists", field="email")
    user = User(
        email=data.email,
        full_name=data.full_name,
        hashed_password=hash_password(data.password),
        role=data.role,
        is_active=True,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"A user with email {data.email!r} already exists", field="email") from exc
    return user


def _active_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).where(User.role == Role.ADMIN, User.is_active.is_(True))
        )
        or 0
    )


def update_user(*, session: Session, user_id: int, data: UserUpdate) -> User:
    """Apply the given fields; the last active admin cannot be demoted or deactivated."""
    user = get_user(session=session, user_id=user_id)
    changes = data.model_dump(exclude_unset=True)
    loses_admin = (
        user.role == Role.ADMIN
        and user.is_active
        and (changes.get("role", Role.ADMIN) != Role.ADMIN or changes.get("is_active") is False)
    )
    if loses_admin and _active_admins(session) <= 1:
        raise Conflict("Cannot demote or deactivate the last active admin")
    if "password" in changes:
        password = changes.pop("password")
        if password is not None:
            user.hashed_password = hash_password(password)
    for field, value in changes.items():
        if value is not None:
            setattr(user, field, value)
    session.flush()
    return user


def ensure_admin(*, session: Session, email: str, password: str) -> User:
    """Create the admin with this email if missing (first run, or the create-admin command)."""
    email = email.strip().lower()
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(
            email=email,
            full_name="Administrator",
            hashed_password=hash_password(password),
            role=Role.ADMIN,
            is_active=True,
        )
        session.add(user)
        session.flush()
    return user
