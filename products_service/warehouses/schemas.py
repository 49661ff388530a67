"""Request and response bodies for warehouses."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from products_service.categories.schemas import strip_text


def _upper_code(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


WarehouseCode = Annotated[
    str,
    # Before the validator: pydantic leaves constraints after one out of the document.
    Field(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Z0-9]+(-[A-Z0-9]+)*$",
        description="Uppercase letters, digits and single hyphens; lowercase is uppercased",
        examples=["BER-1"],
        # What is accepted, before uppercasing; the stored code matches the pattern above.
        json_schema_extra={"pattern": r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$"},
    ),
    BeforeValidator(_upper_code),
]
WarehouseName = Annotated[str, Field(min_length=1, max_length=120), BeforeValidator(strip_text)]
JsonBool = Annotated[bool, Field(strict=True)]  # JSON only: 0 is not false
Address = Annotated[str, Field(max_length=500)]


class WarehouseCreate(BaseModel):
    code: WarehouseCode
    name: WarehouseName
    address: Address = ""
    is_active: JsonBool = True
    is_default: Annotated[
        JsonBool,
        Field(description="Make this the default warehouse; the previous one stops being it"),
    ] = False

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "BER-1",
                    "name": "Berlin warehouse",
                    "address": "Lagerstr. 1, 10115 Berlin",
                    "is_active": True,
                    "is_default": False,
                }
            ]
        }
    )

    @field_validator("is_default")
    @classmethod
    def _default_is_active(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("is_active") is False:
            raise ValueError("an inactive warehouse cannot be the default")
        return value


class WarehouseUpdate(BaseModel):
    """Only the fields sent are changed; the code is permanent."""

    name: WarehouseName | None = None
    address: Address | None = None
    is_active: JsonBool | None = None
    is_default: Annotated[
        JsonBool | None,
        Field(description="true makes this the default; to move the default, set it on another"),
    ] = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Berlin (north)", "is_default": True}]}
    )

    @field_validator("name", "address", "is_active", "is_default")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; omit the field to leave it unchanged")
        return value


class WarehouseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    address: str
    is_active: bool
    is_default: bool
    created_at: datetime
    updated_at: datetime
