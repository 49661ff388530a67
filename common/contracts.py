"""The contract between sales_service and products_service: stock for a sale (below) and
the reservation API for holds. Only a service token (``create_service_token``) may reserve,
commit or release; people may read reservations.

Both sides import these models, so a change here breaks a test rather than production.
Paths (under products_service's ``/api/v1``):

- ``POST /reservations``               ReserveRequest -> 201 ReservationRead
                                        409 InsufficientStockBody when any line is short
- ``POST /reservations/{id}/commit``   ReservationCommit -> 200 ReservationRead (``committed``)
- ``POST /reservations/{id}/release``  -> 200 ReservationRead (status ``released``)
- ``GET  /reservations/{id}``          -> 200 ReservationRead
- ``GET  /reservations``               -> 200 Page[ReservationRead] (``status``, ``reference``)

Reserve is idempotent on ``idempotency_key``: a retry with the same key and body returns
the first reservation (200, in its current status) and changes nothing; the same key with
another body is a 422 ``idempotency_key_reused``. A refused reserve (4xx) stores nothing,
so its key may be used again. Lines are numbered by their 1-based position in the request
(``line_no``); every error about lines names them in a ``lines`` list: 404 ``not_found``
(unknown product or warehouse), 409 ``invalid_state`` (product not active or archived,
warehouse inactive), 409 ``insufficient_stock`` (InsufficientStockBody).

Commit and release are idempotent on the reservation's state: committing a committed one
and releasing a released or expired one answer 200 and change nothing; committing a
released one and releasing a committed one are 409 ``invalid_state``. An expired
reservation (its TTL passed and its stock went back) is still committed if that stock is
free at its warehouses, else 409 InsufficientStockBody; an active one past its TTL that
was not yet swept is committed as held.
"""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from common.errors import FieldError
from common.models import MovementType, ReservationStatus, SaleStockStatus

RESERVATIONS_PATH = "/api/v1/reservations"
MAX_RESERVATION_LINES = 200


class ReserveLine(BaseModel):
    product_id: Annotated[int, Field(gt=0)]
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    warehouse_id: Annotated[
        int | None,
        Field(gt=0, description="Take stock from this warehouse only; default: any, most first"),
    ] = None


class ReserveRequest(BaseModel):
    """Hold stock for every line, all or nothing, until committed, released or expired."""

    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)]
    reference: Annotated[str, Field(max_length=120)] = ""
    actor_id: Annotated[int | None, Field(gt=0, description="The person behind the hold")] = None
    ttl_seconds: Annotated[int | None, Field(gt=0, description="Default from settings")] = None
    lines: Annotated[list[ReserveLine], Field(min_length=1, max_length=MAX_RESERVATION_LINES)]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "sale-7f3a",
                    "reference": "S-2026-000123",
                    "ttl_seconds": 300,
                    "lines": [{"product_id": 1, "quantity": 2}],
                }
            ]
        }
    )


class ReservationCommit(BaseModel):
    """Sell a reservation's stock: the sale it went to is named, and is the ledger movements'
    reference (stock never leaves as a sale without one)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"sale_reference": "S-123", "actor_id": 2}]}
    )

    sale_reference: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
        Field(description="The sale this stock was sold in (e.g. its number)"),
    ]
    actor_id: Annotated[int | None, Field(gt=0, description="The person behind the sale")] = None


class ReservedLine(BaseModel):
    """One allocation: a request line may be split over several warehouses (same line_no)."""

    model_config = ConfigDict(from_attributes=True)

    line_no: int
    product_id: int
    sku: str
    warehouse_id: int
    warehouse_code: str
    quantity: int


class ReservationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    idempotency_key: str
    reference: str
    status: ReservationStatus
    expires_at: datetime
    created_at: datetime
    lines: list[ReservedLine]


class ShortLine(BaseModel):
    """A line that cannot be served: ``available`` is what was left for it after the lines
    before it (lines naming a warehouse count first); ``warehouse_id`` is the one it named."""

    line_no: int
    product_id: int
    sku: str | None = Field(default=None, description="The product's SKU")
    warehouse_id: int | None
    warehouse_code: str | None = Field(default=None, description="The warehouse it named")
    requested: int
    available: int


class InsufficientStockBody(BaseModel):
    """409 body when any line cannot be reserved; nothing was reserved."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "insufficient_stock",
                    "detail": "Not enough stock to sell: line 1 (MUG-1): requested 5, available 2",
                    "lines": [
                        {
                            "line_no": 1,
                            "product_id": 7,
                            "sku": "MUG-1",
                            "warehouse_id": None,
                            "warehouse_code": None,
                            "requested": 5,
                            "available": 2,
                        }
                    ],
                    "fields": [
                        {
                            "field": "body.lines.0.quantity",
                            "reason": "requested 5, 2 available (MUG-1)",
                            "type": "insufficient_stock",
                        }
                    ],
                }
            ]
        }
    )

    error: Literal["insufficient_stock"]
    detail: str
    lines: list[ShortLine]
    fields: list[FieldError] = Field(
        default_factory=list,
        description="The same short lines as inputs at fault: body.lines.<index>.quantity",
    )


# --- stock returns (refunds and cancellations put units back on a shelf) ---------------------
#
# ``POST /inventory/returns`` with an ``Idempotency-Key`` header: ReturnCreate -> 201
# StockChangeRead (one ledger ``return`` movement). A retry with the same key and body gets
# the first answer and moves stock once; the same key with another body is a 422.

RETURNS_PATH = "/api/v1/inventory/returns"
MAX_QUANTITY = 1_000_000

# strict: JSON true is not 1 (these are body fields only).
Id = Annotated[int, Field(strict=True, gt=0)]
Quantity = Annotated[
    int, Field(strict=True, gt=0, le=MAX_QUANTITY, description="Units, a positive integer")
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


class ReturnCreate(BaseModel):
    """Units a customer brought back, put back on the shelf."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"product_id": 1, "warehouse_id": 1, "quantity": 1, "reference": "S-42"}]
        },
    )

    product_id: Id
    warehouse_id: Id
    quantity: Quantity
    reference: Reference = Field(description="e.g. the order or RMA number")
    reason: Reason = ""


class StockLevelRead(BaseModel):
    product_id: int
    sku: str
    warehouse_id: int
    warehouse_code: str
    on_hand: int
    reserved: int
    available: int
    updated_at: datetime


class MovementRead(BaseModel):
    """One ledger row."""

    id: int
    product_id: int
    sku: str
    warehouse_id: int
    warehouse_code: str
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


# --- stock for a sale, in one call ---------------------------------------------------------
#
# ``POST /sale-stock`` (a service identity only: sales_service) SaleStockTake -> 201
# SaleStockRead: every line's stock taken as ``sale`` ledger movements, all or none, with each
# product's snapshot (price, cost, name, category) for the sale's lines. Idempotent on ``key``
# (one per attempt at recording a sale): a retry with the same body answers 200 with the first
# take; another body is a 422 ``idempotency_key_reused``. Refusals store nothing: 422
# ``unprocessable`` (unknown, inactive or archived products, each line named in ``lines``),
# 409 InsufficientStockBody, 409 ``invalid_state`` when the key was voided.
#
# ``POST /sale-stock/{key}/return`` -> 200 SaleStockRead: gives a take's stock back (``return``
# movements) when no sale was recorded for it; with no take under the key yet, voids the key
# so a take arriving later is refused. Idempotent: returned and voided stay so.

SALE_STOCK_PATH = "/api/v1/sale-stock"
# Lower case only: MySQL/MariaDB compare keys without regard to case, so "AB" and "ab" would
# name one take.
StockKey = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[a-z0-9_.:-]+$")]


class SaleStockLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Id
    quantity: Quantity


class SaleStockTake(BaseModel):
    """Take the stock of every line of one sale attempt, from the warehouses with the most."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "key": "3f9c0b2e6a1d4e5f",
                    "actor_id": 2,
                    "lines": [{"product_id": 1, "quantity": 2}],
                }
            ]
        },
    )

    key: StockKey
    actor_id: Annotated[int | None, Field(gt=0, description="The person behind the sale")] = None
    lines: Annotated[list[SaleStockLine], Field(min_length=1, max_length=MAX_RESERVATION_LINES)]


class TakenFrom(BaseModel):
    warehouse_id: int
    warehouse_code: str | None = Field(
        default=None, description="The warehouse's code then (null on takes before it was kept)"
    )
    quantity: int


class TakenLine(BaseModel):
    """One line as taken, with the product as it was at that moment."""

    line_no: int
    product_id: int
    quantity: int
    sku: str
    name: str
    category_id: int | None
    # (None in takes recorded before it was part of the answer)
    category_name: str | None = None
    price: Decimal
    cost_price: Decimal
    allocations: list[TakenFrom]


class SaleStockRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    status: SaleStockStatus
    lines: list[TakenLine]
    created_at: datetime
