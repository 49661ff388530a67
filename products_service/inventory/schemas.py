"""Request and response bodies for stock operations, transfers, the ledger and its check."""

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from common.contracts import (  # the part of the contract sales_service relies on
    MAX_QUANTITY,
    Id,
    MovementRead,
    Quantity,
    Reason,
    Reference,
    ReturnCreate,
    StockChangeRead,
    StockLevelRead,
)
from common.models import TransferStatus
from products_service.products.schemas import MoneyOut

__all__ = ["MovementRead", "ReturnCreate", "StockChangeRead", "StockLevelRead"]

RequiredReason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
]


class _StockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Id
    warehouse_id: Id


class ReceiptCreate(_StockRequest):
    """Stock arriving from a supplier."""

    quantity: Quantity
    reason: Reason = ""
    reference: Reference | None = Field(default=None, description="e.g. a purchase order number")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"product_id": 1, "warehouse_id": 1, "quantity": 24, "reference": "PO-1"}]
        }
    )


class AdjustmentCreate(_StockRequest):
    """A signed correction with a reason; it may not leave less than is reserved."""

    quantity: Annotated[
        int,
        Field(
            strict=True, ge=-MAX_QUANTITY, le=MAX_QUANTITY, description="Signed change, never zero"
        ),
    ]
    reason: RequiredReason
    reference: Reference | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"product_id": 1, "warehouse_id": 1, "quantity": -2, "reason": "found broken seal"}
            ]
        }
    )

    @model_validator(mode="after")
    def _not_zero(self) -> "AdjustmentCreate":
        if self.quantity == 0:
            raise ValueError("quantity must not be zero")
        return self


class CountCreate(_StockRequest):
    """The quantity found on the shelf; the ledger records the difference."""

    counted_quantity: Annotated[int, Field(strict=True, ge=0, le=MAX_QUANTITY)]
    reason: Reason = "stock count"
    reference: Reference | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"product_id": 1, "warehouse_id": 1, "counted_quantity": 17}]
        }
    )


class DamageCreate(_StockRequest):
    """Units written off as damaged."""

    quantity: Quantity
    reason: RequiredReason
    reference: Reference | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"product_id": 1, "warehouse_id": 1, "quantity": 1, "reason": "dropped"}]
        }
    )


class TransferCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 2, "quantity": 5}
            ]
        },
    )

    product_id: Id
    from_warehouse_id: Id
    to_warehouse_id: Id
    quantity: Quantity
    reason: Reason = ""

    @model_validator(mode="after")
    def _distinct_warehouses(self) -> "TransferCreate":
        if self.from_warehouse_id == self.to_warehouse_id:
            raise ValueError("from_warehouse_id and to_warehouse_id must differ")
        return self


class TransferRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    product_id: int
    sku: str
    from_warehouse_id: int
    from_warehouse_code: str
    to_warehouse_id: int
    to_warehouse_code: str
    quantity: int
    status: TransferStatus
    reason: str = Field(description="Why the stock moves, as given when it was started")
    actor_id: int | None = Field(description="Who started it")
    actor_email: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None


class StockLevelListRead(BaseModel):
    """A row of the levels list: a product's stock in one warehouse now or, with ``as_of``,
    at that moment as the ledger tells it."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "product_id": 1,
                    "sku": "MUG-1",
                    "warehouse_id": 1,
                    "warehouse_code": "MAIN",
                    "on_hand": 17,
                    "reserved": 2,
                    "available": 15,
                    "updated_at": "2026-12-01T09:00:00Z",
                },
                {
                    "product_id": 1,
                    "sku": "MUG-1",
                    "warehouse_id": 1,
                    "warehouse_code": "MAIN",
                    "on_hand": 24,
                    "reserved": None,
                    "available": None,
                    "updated_at": "2026-11-30T16:20:00Z",
                },
            ]
        },
    )

    product_id: int
    sku: str
    warehouse_id: int
    warehouse_code: str
    on_hand: Annotated[
        int, Field(description="With as_of: the sum of the ledger's movements up to as_of")
    ]
    reserved: Annotated[
        int | None,
        Field(
            description="Null with as_of: reservations keep no history, so what was held at "
            "a past moment is not known"
        ),
    ]
    available: Annotated[
        int | None, Field(description="on_hand - reserved; null with as_of, as reserved is")
    ]
    updated_at: Annotated[
        datetime,
        Field(
            description="When the level last changed; with as_of: the time of its last "
            "ledger movement at or before as_of"
        ),
    ]


class StockHealth(enum.StrEnum):
    """How urgent a product's stock is, most urgent first."""

    OUT = "out"
    CRITICAL = "critical"
    LOW = "low"
    OK = "ok"


class LowStockRead(BaseModel):
    product_id: int
    sku: str
    name: str
    category_id: int | None
    on_hand: int
    reserved: int
    available: int
    applied_threshold: Annotated[
        int,
        Field(
            description="The threshold the health is judged by: the list's `threshold` "
            "parameter when given, else the product's own `low_stock_threshold`"
        ),
    ]
    health: StockHealth


# How long the available stock lasts at the pace sales took it over the window
# (``window_days``, ending today in UTC): on each low-stock row and on each of its warehouses.
def _days_text(value: Decimal) -> str:
    return f"{value:.2f}"


DaysOut = Annotated[
    Decimal,
    PlainSerializer(_days_text, return_type=str, when_used="json"),
    Field(examples=["6.00"], json_schema_extra={"pattern": r"^[0-9]+\.[0-9]{2}$"}),
]
UnitsSold = Annotated[
    int,
    Field(
        description="Net units sales took over the window, from the ledger: `sale` movements "
        "less `return` movements (refunds, cancellations, stock given back)"
    ),
]
DaysOfCover = Annotated[
    DaysOut | None,
    Field(
        description="available x window_days / units_sold, rounded half up to the cent; "
        "0.00 when none is available; else null when nothing was sold (units_sold <= 0)"
    ),
]
StockoutDate = Annotated[
    date | None,
    Field(
        description="Today (UTC) + available x window_days / units_sold days, rounded up; "
        "today when none is available; else null when nothing was sold (units_sold <= 0)"
    ),
]


class WarehouseStock(BaseModel):
    """A product's stock in one warehouse, and how long it lasts there."""

    warehouse_id: int
    warehouse_code: str
    on_hand: int
    reserved: int
    available: int
    units_sold: UnitsSold
    days_of_cover: DaysOfCover
    projected_stockout_date: StockoutDate


class LowStockItem(LowStockRead):
    """A row of the low-stock list: the product's health, and what a buyer needs beside it."""

    category_name: Annotated[
        str | None, Field(description="The category's full name", examples=["Sports / Running"])
    ]
    price: MoneyOut
    low_stock_threshold: Annotated[int, Field(description="The product's own threshold")]
    warehouses: Annotated[
        list[WarehouseStock],
        Field(
            description="The stock counted, per warehouse (those with a level row), by code; "
            "the row's `units_sold` is the sum of theirs"
        ),
    ]
    units_sold: UnitsSold
    days_of_cover: DaysOfCover
    projected_stockout_date: StockoutDate


class ProductHealth(LowStockRead):
    """A product's row of the low-stock list, computed whether or not it is archived (the
    list itself leaves archived products out)."""

    archived: bool


class LedgerMismatch(BaseModel):
    """A level row (or a ledger with no level row) that breaks an invariant."""

    product_id: int
    sku: str | None
    warehouse_id: int
    warehouse_code: str | None
    on_hand: int
    ledger_sum: int
    reserved: int
    active_reserved: int
    last_on_hand_after: int | None
    problems: list[str]


class LedgerCheckRead(BaseModel):
    ok: bool
    levels_checked: int
    mismatches: list[LedgerMismatch]
