"""The contract between sales_service and products_service: the stock reservation API.

Both sides import these models, so a change here breaks a test rather than production.
Paths (under products_service's ``/api/v1``):

- ``POST /reservations``               ReserveRequest -> 201 ReservationRead
                                        409 InsufficientStockBody when any line is short
- ``POST /reservations/{id}/commit``   -> 200 ReservationRead (status ``committed``)
- ``POST /reservations/{id}/release``  -> 200 ReservationRead (status ``released``)
- ``GET  /reservations/{id}``          -> 200 ReservationRead

Reserve is idempotent on ``idempotency_key``: a retry with the same key and body returns
the first reservation (200) and changes nothing; the same key with another body is a 422.
Commit and release are idempotent on the reservation's state.
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
    """One allocation: a request line may be split over several warehouses."""

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
