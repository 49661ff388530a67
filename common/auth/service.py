"""Login and sessions (access tokens with rotating refresh tokens), logout, password
changes, and user management rules."""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from common import audit
from common.auth import throttle
from common.auth.schemas import UserCreate, UserUpdate
from common.auth.security import TokenClaims, create_access_token, hash_password, verify_password
from common.auth.throttle import Admission
from common.db import utcnow
from common.errors import Conflict, NotFound, Unauthorized
from common.models import RefreshToken, RevokedToken, Role, User
from common.pagination import PageParams, Slice, first, paginate
from common.settings import CommonSettings

# What the audit log keeps of a user's changes (a password only as "changed", redacted).
USER_TRAIL = audit.Trail("user", ("email", "full_name", "role", "is_active"))


class InvalidCredentials(Unauthorized):
    """Wrong email or password (its attempt stays recorded: see throttle.admit)."""


@dataclass(frozen=True)
class IssuedTokens:
    """What a login or a refresh hands out: a short access token and its rotating refresh."""

    access_token: str
    claims: TokenClaims
    refresh_token: str
    refresh_expires_at: datetime
    user: User


def _hash(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _issue(
    session: Session, user: User, settings: CommonSettings, family: str | None = None
) -> IssuedTokens:
    family = family or uuid.uuid4().hex
    access, claims = create_access_token(
        user_id=user.id,
        role=user.role,
        settings=settings,
        version=user.token_version,
        family=family,
        email=user.email,
    )
    refresh = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=settings.refresh_token_days)
    session.add(
        RefreshToken(
            token_hash=_hash(refresh), family=family, user_id=user.id, expires_at=expires_at
        )
    )
    session.flush()
    return IssuedTokens(access, claims, refresh, expires_at, user)


def login(
    *, session: Session, admission: Admission, password: str, settings: CommonSettings
) -> IssuedTokens:
    """Check the password of an admitted attempt and open a session (a token family).

    A failure raises InvalidCredentials and leaves the attempt recorded as a failure.
    """
    user = session.scalar(select(User).where(User.email == admission.account))
    ok = verify_password(password, user.hashed_password if user else None)
    if not ok or user is None or not user.is_active:
        raise InvalidCredentials("Incorrect email or password")
    throttle.succeeded(session, admission)
    return _issue(session, user, settings)


class RefreshTokenReused(Unauthorized):
    """A used refresh token came back: its family is revoked; the caller must commit that."""


def refresh(*, session: Session, refresh_token: str, settings: CommonSettings) -> IssuedTokens:
    """Rotate a refresh token: it is used up, and a new access and refresh token of the same
    family are issued. Presenting a used one again revokes its family (RefreshTokenReused):
    one of its two holders is a thief, and neither can tell which, so both log in again."""
    now = utcnow()
    row = session.get(RefreshToken, _hash(refresh_token), with_for_update=True)
    if row is None or row.expires_at <= now:
        raise Unauthorized("Refresh token is invalid or expired; log in again")
    if row.revoked_at is not None:
        raise Unauthorized("Refresh token was revoked; log in again")
    if row.used_at is not None:
        _revoke_refresh(session, RefreshToken.family == row.family)
        raise RefreshTokenReused(
            "Refresh token was already used: this session is ended on every device; log in again"
        )
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("User is inactive or no longer exists")
    row.used_at = now
    return _issue(session, user, settings, family=row.family)


def _revoke_refresh(session: Session, which: ColumnElement[bool]) -> None:
    session.execute(
        update(RefreshToken)
        .where(which, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def revoke_all_tokens(session: Session, user: User) -> None:
    """Every token the user holds stops working: access tokens by version, refresh by row."""
    user.token_version += 1
    _revoke_refresh(session, RefreshToken.user_id == user.id)
    session.execute(delete(RefreshToken).where(RefreshToken.expires_at < utcnow()))


def change_password(
    *,
    session: Session,
    user_id: int,
    admission: Admission,
    current_password: str,
    new_password: str,
    settings: CommonSettings,
) -> IssuedTokens:
    """The caller's own password; every other session ends, this one gets new tokens."""
    user = get_user(session=session, user_id=user_id)
    if not verify_password(current_password, user.hashed_password):
        raise InvalidCredentials("The current password is wrong")
    throttle.succeeded(session, admission)
    _set_password(session, user, new_password, "user.password_changed", user.id, user.email)
    return _issue(session, user, settings)


def _set_password(
    session: Session,
    user: User,
    password: str,
    action: str,
    actor_id: int | None,
    actor_email: str | None,
) -> None:
    """A new password, every old token revoked, and an audit entry that says so."""
    before = user.hashed_password
    user.hashed_password = hash_password(password)
    revoke_all_tokens(session, user)
    audit.record(
        session,
        actor_id=actor_id,
        actor_email=actor_email,
        action=action,
        entity_type="user",
        entity_id=user.id,
        changes={"password": {"before": before, "after": user.hashed_password}},
    )


def logout(*, session: Session, claims: TokenClaims) -> None:
    """Revoke this token until it would have expired, and end its session (the refresh
    tokens of its family); logging out twice is harmless."""
    if session.get(RevokedToken, claims.jti) is None:
        session.add(RevokedToken(jti=claims.jti, expires_at=claims.expires_at))
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    if claims.family:
        _revoke_refresh(
            session,
            (RefreshToken.family == claims.family) & (RefreshToken.user_id == claims.user_id),
        )


def get_user(*, session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found", resource="user", id=user_id)
    return user


def list_users(*, session: Session, page: PageParams) -> Slice[User]:
    return paginate(session, select(User), page, [User.id.asc()]).map(first)


def create_user(*, session: Session, data: UserCreate, actor_id: int, actor_email: str) -> User:
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
    USER_TRAIL.record(session, "user.created", user, {}, actor_id=actor_id, actor_email=actor_email)
    return user


def _active_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).where(User.role == Role.ADMIN, User.is_active.is_(True))
        )
        or 0
    )


def update_user(
    *, session: Session, user_id: int, data: UserUpdate, actor_id: int, actor_email: str
) -> User:
    """Apply the given fields; the last active admin cannot be demoted or deactivated.
    Resetting the password, changing the role or the active flag revokes the user's tokens."""
    user = get_user(session=session, user_id=user_id)
    changes = data.model_dump(exclude_unset=True)
    loses_admin = (
        user.role == Role.ADMIN
        and user.is_active
        and (changes.get("role", Role.ADMIN) != Role.ADMIN or changes.get("is_active") is False)
    )
    if loses_admin and _active_admins(session) <= 1:
        raise Conflict("Cannot demote or deactivate the last active admin")
    before = USER_TRAIL.snapshot(user)
    password = changes.pop("password", None)
    if password is not None:
        _set_password(session, user, password, "user.password_reset", actor_id, actor_email)
    for field, value in changes.items():
        if value is not None and getattr(user, field) != value:
            if field in ("role", "is_active") and password is None:
                # A new role or a deactivation: no token signed before holds.
                revoke_all_tokens(session, user)
                password = ""  # revoked once is enough
            setattr(user, field, value)
    session.flush()
    USER_TRAIL.record(
        session, "user.updated", user, before, actor_id=actor_id, actor_email=actor_email
    )
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
