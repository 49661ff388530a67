"""Refund and cancellation bodies, and what a refund reads back as."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.models import RefundKind, StockSync
from sales_service.sales.schemas import MAX_SALE_LINES

Reason = Annotated[str, Field(max_length=500)]


class RefundLineCreate(BaseModel):
    """Units of one sale line to refund; name the line by its id or by its line number."""

    model_config = ConfigDict(extra="forbid")

    line_id: Annotated[int | None, Field(strict=True, gt=0, description="The sale line's id")] = (
        None
    )
    line_no: Annotated[
        int | None, Field(strict=True, gt=0, description="The sale line's number (1-based)")
    ] = None
    quantity: Annotated[int, Field(strict=True, gt=0, le=100_000)]

    @model_validator(mode="after")
    def _one_line_name(self) -> "RefundLineCreate":
        if (self.line_id is None) == (self.line_no is None):
            raise ValueError("name the sale line with exactly one of line_id or line_no")
        return self


class RefundCreate(BaseModel):
    """Which units come back; no lines (or an empty list) means everything still refundable."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"lines": [{"line_no": 1, "quantity": 1}], "reason": "arrived damaged"},
                {"reason": "customer returned the whole order"},
            ]
        },
    )

    lines: Annotated[
        list[RefundLineCreate] | None,
        Field(max_length=MAX_SALE_LINES, description="Omit for everything still refundable"),
    ] = None
    reason: Reason = ""


class CancelCreate(BaseModel):
    """Why the sale is cancelled (optional)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "customer changed their mind"}]}
    )

    reason: Reason = ""


class RefundLineRead(BaseModel):
    id: int
    sale_line_id: int
    line_no: int
    product_id: int
    sku: str
    quantity: int
    amount: Decimal = Field(description="quantity x the line's unit price")
    cost: Decimal = Field(description="quantity x the line's unit cost")


class RefundRead(BaseModel):
    """One refund or cancellation, and whether its stock is back in products_service yet."""

    id: int
    sale_id: int
    sale_number: str
    kind: RefundKind
    units: int
    amount: Decimal
    cost: Decimal
    reason: str
    stock_sync: StockSync = Field(
        description=(
            "'done' once the units are back on the shelves they were sold from (or there was "
            "nothing to return because the sale's own stock was never taken); 'pending' while "
            "products_service has not taken them yet (retried in the background); 'failed' "
            "if products_service refused them"
        )
    )
    actor_id: int | None = Field(description="Who refunded or cancelled it")
    actor_email: str | None
    created_at: datetime
    lines: list[RefundLineRead]
