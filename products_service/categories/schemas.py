"""Request and response bodies for the category tree."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from common.models import Category

SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
FULL_NAME_SEPARATOR = " / "  # between the names of a category's path (full_name)


def strip_text(value: Any) -> Any:
    """Trim surrounding whitespace before length and pattern checks see the value."""
    return value.strip() if isinstance(value, str) else value


def _not_all_digits(value: str) -> str:
    # GET /categories/{id_or_slug} reads a number as an id, so a numeric slug would be unreachable.
    if value.isdigit():
        raise ValueError("must contain a letter, so it cannot be mistaken for an id")
    return value


# Constraints before the validator: pydantic leaves those after one out of the document.
CategoryName = Annotated[str, Field(min_length=1, max_length=120), BeforeValidator(strip_text)]
Slug = Annotated[
    str,
    Field(min_length=1, max_length=120, pattern=SLUG_PATTERN, examples=["running-shoes"]),
    BeforeValidator(strip_text),
]
Description = Annotated[str, Field(max_length=10_000)]
ParentId = Annotated[
    int | None,
    Field(strict=True, gt=0, description="The parent category; null for a top-level one"),
]


class CategoryCreate(BaseModel):
    name: CategoryName
    slug: Annotated[
        Slug | None,
        Field(description="Lowercase words joined by hyphens; derived from the name if omitted"),
    ] = None
    description: Description = ""
    parent_id: ParentId = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Running shoes",
                    "slug": "running-shoes",
                    "description": "Road and trail running shoes",
                    "parent_id": 1,
                }
            ]
        }
    )

    @field_validator("slug")
    @classmethod
    def _slug_not_numeric(cls, value: str | None) -> str | None:
        return None if value is None else _not_all_digits(value)


class CategoryUpdate(BaseModel):
    """Only the fields sent are changed; ``parent_id: null`` moves the category to the top."""

    name: CategoryName | None = None
    slug: Slug | None = None
    description: Description | None = None
    parent_id: ParentId = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Trail shoes", "parent_id": 3}]}
    )

    @field_validator("name", "slug", "description")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("may not be null; omit the field to leave it unchanged")
        return value

    @field_validator("slug")
    @classmethod
    def _slug_not_numeric(cls, value: str) -> str:
        return _not_all_digits(value)


class CategoryRef(BaseModel):
    """Enough of a category to show and link it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str


class CategoryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    description: str
    parent_id: int | None
    path: Annotated[str, Field(description="Ids from the root down to this one, e.g. /1/5/9/")]
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime
    full_name: Annotated[
        str,
        Field(
            description="Names from the root down to this one",
            examples=["Sports / Running / Trail shoes"],
        ),
    ]

    @classmethod
    def of(cls, category: Category, full_name: str) -> "CategoryRead":
        fields = {
            name: getattr(category, name)
            for name in CategoryRead.model_fields
            if name != "full_name"
        }
        return CategoryRead.model_validate({**fields, "full_name": full_name})


class CategoryDetail(CategoryRead):
    ancestors: Annotated[list[CategoryRef], Field(description="From the root down to the parent")]
    children: Annotated[list[CategoryRef], Field(description="Direct, non-archived subcategories")]

    @classmethod
    def build(
        cls, category: Category, ancestors: list[Category], children: list[Category]
    ) -> "CategoryDetail":
        full_name = FULL_NAME_SEPARATOR.join([*(a.name for a in ancestors), category.name])
        return cls.model_validate(
            {
                **CategoryRead.of(category, full_name).model_dump(),
                "ancestors": [CategoryRef.model_validate(c) for c in ancestors],
                "children": [CategoryRef.model_validate(c) for c in children],
            }
        )


class CategoryTreeNode(BaseModel):
    """A category in the tree, with its subcategories (by name)."""

    id: int
    name: str
    slug: str
    full_name: Annotated[str, Field(examples=["Sports / Running"])]
    archived_at: datetime | None
    children: list["CategoryTreeNode"]
