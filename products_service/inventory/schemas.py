"""Request and response bodies for stock operations, transfers, the ledger and its check."""

import enum
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.models import MovementType, TransferStatus

MAX_QUANTITY = 1_000_000

Id = Annotated[int, Field(gt=0)]
Quantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY, description="Units, a positive integer")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
RequiredReason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


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
        Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, description="Signed change, never zero"),
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

    counted_quantity: Annotated[int, Field(ge=0, le=MAX_QUANTITY)]
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


class ReturnCreate(_StockRequest):
    """Units a customer brought back, put back on the shelf."""

    quantity: Quantity
    reference: Reference = Field(description="e.g. the order or RMA number")
    reason: Reason = ""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"product_id": 1, "warehouse_id": 1, "quantity": 1, "reference": "S-42"}]
        }
    )


class StockLevelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: int
    warehouse_id: int
    on_hand: int
    reserved: int
    available: int
    updated_at: datetime


class MovementRead(BaseModel):
    """One ledger row."""

    id: int
    product_id: int
    warehouse_id: int
    type: MovementType
    quantity: int
    on_hand_after: int
    reason: str
    reference: str | None
    actor_id: int | None
    actor_email: str | None
    created_at: datetime


class StockChangeRead(BaseModel):
    """What a stock operation did: the ledger row it wrote (if any) and the level it left."""

    recorded: bool = Field(description="False when there was nothing to record (a matching count)")
    detail: str
    movement: MovementRead | None
    level: StockLevelRead


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
    note: Reason = ""

    @model_validator(mode="after")
    def _distinct_warehouses(self) -> "TransferCreate":
        if self.from_warehouse_id == self.to_warehouse_id:
            raise ValueError("from_warehouse_id and to_warehouse_id must differ")
        return self


class TransferRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    product_id: int
    from_warehouse_id: int
    to_warehouse_id: int
    quantity: int
    status: TransferStatus
    note: str
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None


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
    threshold: int
    health: StockHealth


class LedgerMismatch(BaseModel):
    """A level row (or a ledger with no level row) that breaks an invariant."""

    product_id: int
    warehouse_id: int
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
