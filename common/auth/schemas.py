"""Request and response bodies for login and user management."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.models import Role


def _normalise_email(value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or " " in value:
        raise ValueError("must be an email address like name@example.com")
    return value


Email = Annotated[
    str,
    Field(max_length=254, json_schema_extra={"format": "email"}),
    AfterValidator(_normalise_email),
]
Password = Annotated[str, Field(min_length=8, max_length=128)]


class LoginRequest(BaseModel):
    email: Email
    password: Annotated[str, Field(min_length=1, max_length=128)]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "admin@example.com", "password": "admin-change-me"}]
        }
    )


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime


class TokenRead(BaseModel):
    """A session: a short-lived bearer token, and the refresh token that renews it."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_at: datetime
    refresh_token: str = Field(
        description="Send to POST /auth/refresh for a new pair; each works once"
    )
    refresh_expires_at: datetime
    user: UserRead


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class PasswordChange(BaseModel):
    current_password: Annotated[str, Field(min_length=1, max_length=128)]
    new_password: Password


class UserCreate(BaseModel):
    email: Email
    full_name: Annotated[str, Field(max_length=200)] = ""
    password: Password
    role: Role = Role.VIEWER

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ana@example.com",
                    "full_name": "Ana",
                    "password": "s3cret-pass",
                    "role": "manager",
                }
            ]
        }
    )


class UserUpdate(BaseModel):
    full_name: Annotated[str, Field(max_length=200)] | None = None
    password: Password | None = None
    role: Role | None = None
    is_active: Annotated[bool | None, Field(strict=True)] = None
