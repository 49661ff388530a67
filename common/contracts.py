"""The contract between sales_service and products_service: the stock reservation API.

Both sides import these models, so a change here breaks a test rather than production.
Paths (under products_service's ``/api/v1``):

- ``POST /reservations``               ReserveRequest -> 201 ReservationRead
                                        409 InsufficientStockBody when any line is short
- ``POST /reservations/{id}/commit``   -> 200 ReservationRead (status ``committed``)
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
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from common.models import ReservationStatus

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


class ReservedLine(BaseModel):
    """One allocation: a request line may be split over several warehouses (same line_no)."""

    model_config = ConfigDict(from_attributes=True)

    line_no: int
    product_id: int
    warehouse_id: int
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
    warehouse_id: int | None
    requested: int
    available: int


class InsufficientStockBody(BaseModel):
    """409 body when any line cannot be reserved; nothing was reserved."""

    error: str = "insufficient_stock"
    detail: str
    lines: list[ShortLine]
