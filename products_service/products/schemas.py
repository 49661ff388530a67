"""Request and response bodies for products, with money as exact decimal strings."""

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)

from common.fields import PositiveId
from common.models import Category, Product, ProductStatus
from common.money import MONEY_OUT_PATTERN, DecimalText
from products_service.categories.schemas import CategoryRef, strip_text

CENT = Decimal("0.01")
MAX_MONEY = Decimal("9999999999.99")  # Numeric(12, 2)
MAX_THRESHOLD = 2_147_483_647  # the INT column


def _whole_cents(value: Decimal) -> Decimal:
    """Refuse fractions of a cent instead of rounding them away; '19.9' becomes 19.90."""
    if value != value.quantize(CENT):
        raise ValueError("must have at most 2 decimal places")
    # "+ 0" turns a negative zero into 0.00.
    return value.quantize(CENT) + 0


def _money_text(value: Decimal) -> str:
    return f"{value:.2f}"


Money = Annotated[
    Decimal,
    Field(ge=0, le=MAX_MONEY, examples=["19.90"]),
    DecimalText(),
    AfterValidator(_whole_cents),
    PlainSerializer(_money_text, return_type=str, when_used="json"),
]
MoneyOut = Annotated[
    Decimal,
    PlainSerializer(_money_text, return_type=str, when_used="json"),
    Field(examples=["19.90"], json_schema_extra={"pattern": MONEY_OUT_PATTERN}),
]
Sku = Annotated[
    str,
    # Before the validator: pydantic leaves constraints after one out of the document.
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Letters, digits, '-', '_' and '.'; surrounding spaces are trimmed",
        examples=["TSHIRT-BLK-M"],
    ),
    BeforeValidator(strip_text),
]
ProductName = Annotated[str, Field(min_length=1, max_length=200), BeforeValidator(strip_text)]
Description = Annotated[str, Field(max_length=20_000)]
Threshold = Annotated[
    int,
    Field(
        strict=True,  # JSON only: false is not 0
        ge=0,
        le=MAX_THRESHOLD,
        description="Low stock when total available is at most this",
    ),
]
CategoryId = Annotated[
    int | None, Field(strict=True, gt=0, description="An active category, or null")
]


class ProductReadStatus(enum.StrEnum):
    """What a product answers as its status: ``archived`` while it is archived, else its
    stored status (which comes back on restore). Bodies set only the stored ones."""

    DRAFT = "draft"
    ACTIVE = "active"
    INACTIVE = "inactive"
    ARCHIVED = "archived"


def _read_status(product: Product) -> ProductReadStatus:
    if product.archived_at is not None:
        return ProductReadStatus.ARCHIVED
    return ProductReadStatus(product.status)


class ProductCreate(BaseModel):
    sku: Sku
    name: ProductName
    description: Description = ""
    category_id: CategoryId = None
    price: Money
    cost_price: Money
    status: ProductStatus = ProductStatus.ACTIVE
    low_stock_threshold: Threshold = 10

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "TSHIRT-BLK-M",
                    "name": "T-shirt, black, M",
                    "description": "Organic cotton",
                    "category_id": 1,
                    "price": "19.90",
                    "cost_price": "7.25",
                    "status": "active",
                    "low_stock_threshold": 10,
                }
            ]
        }
    )


class ProductUpdate(BaseModel):
    """Only the fields sent are changed; ``category_id: null`` removes the category."""

    sku: Sku | None = None
    name: ProductName | None = None
    description: Description | None = None
    category_id: CategoryId = None
    price: Money | None = None
    cost_price: Money | None = None
    status: ProductStatus | None = None
    low_stock_threshold: Threshold | None = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"price": "17.50", "status": "inactive"}]}
    )

    @field_validator(
        "sku", "name", "description", "price", "cost_price", "status", "low_stock_threshold"
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; omit the field to leave it unchanged")
        return value


class ProductFilters(BaseModel):
    """Query filters of the product list; all optional and combined with AND (the creation
    time's `from`/`to` are common.time_window's)."""

    q: Annotated[
        str | None,
        Field(max_length=200, description="Name, SKU or description contains this (any case)"),
    ] = None
    category_id: Annotated[
        list[PositiveId] | None,
        Field(
            description="In this category or any of its subcategories; repeat for any of "
            "several categories"
        ),
    ] = None
    status: Annotated[
        list[ProductReadStatus] | None,
        Field(
            description="archived: the archived products (with or without include_archived). "
            "draft, active, inactive: the stored status; products not archived with it, or "
            "with include_archived=true archived ones stored with it too. Repeat for any of "
            "several"
        ),
    ] = None
    min_price: Annotated[Money | None, Field(description="Price at least this")] = None
    max_price: Annotated[Money | None, Field(description="Price at most this")] = None
    low_stock_only: Annotated[
        bool, Field(description="Only products whose total available <= their threshold")
    ] = False
    include_archived: Annotated[bool, Field(description="Also list archived products")] = False

    @field_validator("max_price")
    @classmethod
    def _price_range(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        low = info.data.get("min_price")
        if value is not None and low is not None and low > value:
            raise ValueError(f"must not be less than min_price ({low})")
        return value


class StockTotals(BaseModel):
    on_hand: int
    reserved: int
    available: int


class WarehouseStock(StockTotals):
    warehouse_id: int
    warehouse_code: str
    warehouse_name: str


class ProductRead(BaseModel):
    """A product with its category and its stock summed over all warehouses."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    sku: str
    name: str
    description: str
    category_id: int | None
    category: CategoryRef | None
    price: MoneyOut
    cost_price: MoneyOut
    status: Annotated[
        ProductReadStatus,
        Field(description="archived while archived_at is set, else the stored status"),
    ]
    low_stock_threshold: int
    totals: StockTotals
    low_stock: Annotated[bool, Field(description="Total available is at most the threshold")]
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(
        cls, product: Product, category: Category | None, totals: StockTotals
    ) -> "ProductRead":
        return cls.model_validate(
            {
                **{name: getattr(product, name) for name in _PRODUCT_COLUMNS},
                "status": _read_status(product),
                "category": CategoryRef.model_validate(category) if category else None,
                "totals": totals,
                "low_stock": totals.available <= product.low_stock_threshold,
            }
        )


class ProductDetail(ProductRead):
    """A product with its stock in each warehouse that has ever held it."""

    stock: list[WarehouseStock]

    @classmethod
    def build_detail(
        cls, product: Product, category: Category | None, stock: list[WarehouseStock]
    ) -> "ProductDetail":
        totals = StockTotals(
            on_hand=sum(s.on_hand for s in stock),
            reserved=sum(s.reserved for s in stock),
            available=sum(s.available for s in stock),
        )
        summary = ProductRead.build(product, category, totals)
        return cls.model_validate({**dict(summary), "stock": stock})


_PRODUCT_COLUMNS = (
    "id",
    "sku",
    "name",
    "description",
    "category_id",
    "price",
    "cost_price",
    "low_stock_threshold",
    "archived_at",
    "created_at",
    "updated_at",
)
