"""Sales channel bodies."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ChannelCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$"),
    Field(
        min_length=1,
        max_length=40,
        description="Lowercase letters, digits and hyphens; uppercase is lowercased",
        # What is accepted, before lowercasing; the stored code is lowercase.
        json_schema_extra={"pattern": r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$"},
    ),
]
JsonBool = Annotated[bool, Field(strict=True)]  # JSON only: 0 is not false
ChannelName = Annotated[
    str, StringConstraints(strip_whitespace=True), Field(min_length=1, max_length=120)
]


class ChannelCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"code": "amazon", "name": "Amazon"}]}
    )

    code: ChannelCode
    name: ChannelName
    is_active: JsonBool = True


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ChannelName | None = None
    is_active: JsonBool | None = None


class ChannelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
