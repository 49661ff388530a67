"""Sale bodies: what a manager sends, and what the dashboard reads back."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.fields import Instant
from common.models import SaleStatus, StockSync
from common.money import DecimalText

Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2), DecimalText()]
MAX_SALE_LINES = 200


class SaleLineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Annotated[int, Field(strict=True, gt=0)]
    quantity: Annotated[int, Field(strict=True, gt=0, le=100_000)]
    unit_price: Annotated[
        Money | None, Field(description="Default: the product's current price")
    ] = None


class SaleCreate(BaseModel):
    """A sale of one or more lines through one channel (name it by id or by code)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel_code": "web-store",
                    "lines": [
                        {"product_id": 1, "quantity": 2},
                        {"product_id": 3, "quantity": 1, "unit_price": "17.50"},
                    ],
                }
            ]
        },
    )

    channel_id: Annotated[int | None, Field(strict=True, gt=0)] = None
    channel_code: Annotated[str | None, Field(min_length=1, max_length=40)] = None
    sold_at: Annotated[
        Instant | None,
        Field(description="When it was sold (with an offset); default now; past for imports"),
    ] = None
    note: Annotated[str, Field(max_length=500)] = ""
    lines: Annotated[list[SaleLineCreate], Field(min_length=1, max_length=MAX_SALE_LINES)]

    @model_validator(mode="after")
    def _one_channel(self) -> "SaleCreate":
        if (self.channel_id is None) == (self.channel_code is None):
            raise ValueError("name the channel with exactly one of channel_id or channel_code")
        return self


class ChannelRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str


class Allocation(BaseModel):
    """Where a line's units came from: the warehouse (its code as it was when sold; null on
    sales recorded before codes were kept, or imported) and how many."""

    warehouse_id: int
    warehouse_code: str | None = None
    quantity: int


class SaleLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    line_no: int
    product_id: int
    sku: str
    product_name: str
    category_id: int | None
    category_name: Annotated[
        str | None, Field(description="The category's name as sold (kept if it is renamed)")
    ]
    quantity: int
    unit_price: Decimal
    unit_cost: Decimal
    line_total: Decimal
    refunded_quantity: int
    refunded_total: Decimal
    allocations: list[Allocation]


class SaleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    channel: ChannelRef
    status: SaleStatus
    sold_at: datetime
    units: int
    total: Decimal
    cost_total: Decimal
    refunded_units: int
    refunded_total: Decimal
    net_total: Decimal
    stock_sync: StockSync = Field(
        description="'done': its stock was taken in products_service before it was recorded, "
        "or it is an imported order (external_order_id set), which takes none (sales "
        "recorded by older versions could be 'pending' or 'failed')"
    )
    note: str
    actor_id: int | None = Field(description="Who recorded or imported it")
    actor_email: str | None
    external_order_id: str | None = Field(
        default=None,
        description="An imported order's id on its marketplace (e.g. Amazon's), else null",
    )
    created_at: datetime
    lines: list[SaleLineRead]
