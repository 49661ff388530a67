"""The shared schema. products_service writes catalog, inventory and auth tables."""

import enum
import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from common.db import Base, UTCDateTime, utcnow

MONEY = Numeric(12, 2)


def _enum(cls: type[enum.Enum], length: int = 20) -> Enum:
    """Enums stored as their string values (VARCHAR + CHECK), portable across MySQL and SQLite."""
    return Enum(
        cls,
        native_enum=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
        create_constraint=True,
    )


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    VIEWER = "viewer"


class ProductStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    INACTIVE = "inactive"


class MovementType(enum.StrEnum):
    RECEIPT = "receipt"
    SALE = "sale"
    ADJUSTMENT = "adjustment"
    DAMAGE = "damage"
    RETURN = "return"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    COUNT_CORRECTION = "count_correction"


class TransferStatus(enum.StrEnum):
    IN_TRANSIT = "in_transit"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class ReservationStatus(enum.StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


def _as_created(context: Any) -> datetime:
    """A new row's ``updated_at``: its ``created_at`` (one moment, not a second clock read)."""
    created: datetime = context.get_current_parameters()["created_at"]
    return created


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_as_created, onupdate=utcnow)


# --- auth -------------------------------------------------------------------------------


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    hashed_password: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Every token carries the version it was signed at; raising it (a password change or
    # reset, deactivation, a role change) makes all the user's tokens worthless at once.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RevokedToken(Base):
    """A logged-out JWT, kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RefreshToken(Base):
    """A refresh token, stored as its SHA-256 only. Each use rotates it: the token is marked
    used and its successor issued in the same family; a used token presented again means it
    was stolen, and its whole family is revoked."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_user_family", "user_id", "family"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """Failed (and in-flight) logins, counted per account, per client address and per
    (account, client) pair to throttle guessing (see common/auth/throttle.py)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_account_at", "account", "attempted_at"),
        Index("ix_login_attempts_pair", "account", "client", "id"),
        Index("ix_login_attempts_client_at", "client", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account: Mapped[str] = mapped_column(String(254))
    client: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- catalog ----------------------------------------------------------------------------


class Category(TimestampMixin, Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), index=True
    )
    # Materialised path of ids, e.g. "/1/5/9/": a subtree is one indexed prefix match.
    path: Mapped[str] = mapped_column(String(255), default="/", index=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    parent: Mapped["Category | None"] = relationship(remote_side=[id], lazy="raise")


class Product(TimestampMixin, Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("cost_price >= 0", name="cost_not_negative"),
        CheckConstraint("low_stock_threshold >= 0", name="threshold_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), index=True
    )
    price: Mapped[Decimal] = mapped_column(MONEY, index=True)
    cost_price: Mapped[Decimal] = mapped_column(MONEY)
    status: Mapped[ProductStatus] = mapped_column(
        _enum(ProductStatus), default=ProductStatus.ACTIVE, index=True
    )
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=10)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    category: Mapped[Category | None] = relationship(lazy="raise")


class Warehouse(TimestampMixin, Base):
    __tablename__ = "warehouses"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(500), default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


# --- inventory --------------------------------------------------------------------------


class StockHealthState(Base):
    """The stock health a product was last announced in (ok, low, critical, out: see the
    low-stock list), kept by the stock-alerts consumer so that an alert is sent when the
    health changes, never again while it stays."""

    __tablename__ = "stock_health_states"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    health: Mapped[str] = mapped_column(String(10))
    available: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockLevel(Base):
    """Current stock of one product in one warehouse; the ledger below always sums to on_hand."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        UniqueConstraint("product_id", "warehouse_id"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    warehouse_id: Mapped[int] = mapped_column(
        ForeignKey("warehouses.id", ondelete="RESTRICT"), index=True
    )
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockMovement(Base):
    """One append-only ledger entry: a signed quantity and the on-hand level it left."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        Index("ix_stock_movements_product_at", "product_id", "created_at"),
        Index("ix_stock_movements_level", "product_id", "warehouse_id", "id"),
        # Covers the levels at a past moment (sum of quantity up to created_at, per level).
        Index(
            "ix_stock_movements_level_at", "product_id", "warehouse_id", "created_at", "quantity"
        ),
        CheckConstraint("quantity <> 0", name="quantity_not_zero"),
        CheckConstraint("on_hand_after >= 0", name="on_hand_after_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id", ondelete="RESTRICT"))
    movement_type: Mapped[MovementType] = mapped_column(_enum(MovementType), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    on_hand_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500), default="")
    reference: Mapped[str | None] = mapped_column(String(120), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Transfer(TimestampMixin, Base):
    """Stock moving between warehouses; while in transit it is on no shelf and not sellable."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("from_warehouse_id <> to_warehouse_id", name="distinct_warehouses"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    from_warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    to_warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[TransferStatus] = mapped_column(
        _enum(TransferStatus), default=TransferStatus.IN_TRANSIT, index=True
    )
    note: Mapped[str] = mapped_column(String(500), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Reservation(TimestampMixin, Base):
    """Stock held for a caller (the sales service) until committed, released or expired."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_status_expires", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(120), default="")
    status: Mapped[ReservationStatus] = mapped_column(
        _enum(ReservationStatus), default=ReservationStatus.ACTIVE
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    lines: Mapped[list["ReservationLine"]] = relationship(
        lazy="raise", order_by="ReservationLine.id", cascade="all, delete-orphan"
    )


class ReservationLine(Base):
    __tablename__ = "reservation_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reservation_id: Mapped[int] = mapped_column(
        ForeignKey("reservations.id", ondelete="CASCADE"), index=True
    )
    line_no: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    # What names them, read with the line (a subquery each, in the same statement).
    sku: Mapped[str] = column_property(
        select(Product.sku).where(Product.id == product_id).scalar_subquery()
    )
    warehouse_code: Mapped[str] = column_property(
        select(Warehouse.code).where(Warehouse.id == warehouse_id).scalar_subquery()
    )


class IdempotencyRecord(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed on retries."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(60))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


# --- sales (written by sales_service only) ----------------------------------------------


class SaleStatus(enum.StrEnum):
    COMPLETED = "completed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class StockSync(enum.StrEnum):
    """Whether products_service has applied this record's stock effect yet."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class RefundKind(enum.StrEnum):
    REFUND = "refund"
    CANCELLATION = "cancellation"


class SalesChannel(TimestampMixin, Base):
    __tablename__ = "sales_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class Sale(Base):
    """One order. Money columns are exact; net figures subtract what was refunded."""

    __tablename__ = "sales"
    __table_args__ = (
        UniqueConstraint("created_by_id", "idempotency_key", name="uq_sales_user_key"),
        # An imported order is one sale per channel however often its file is imported.
        UniqueConstraint("channel_id", "external_order_id", name="uq_sales_channel_external_id"),
        Index("ix_sales_sold_at", "sold_at"),
        Index("ix_sales_channel_sold_at", "channel_id", "sold_at"),
        Index("ix_sales_stock_sync", "stock_sync", "id"),
        Index("ix_sales_external_order_id", "external_order_id"),
        CheckConstraint("units > 0", name="units_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id", ondelete="RESTRICT"))
    status: Mapped[SaleStatus] = mapped_column(_enum(SaleStatus), default=SaleStatus.COMPLETED)
    sold_at: Mapped[datetime] = mapped_column(UTCDateTime)
    units: Mapped[int] = mapped_column(Integer)
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    cost_total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    refunded_units: Mapped[int] = mapped_column(Integer, default=0)
    refunded_total: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0.00"))
    refunded_cost: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0.00"))
    note: Mapped[str] = mapped_column(String(500), default="")
    # Unique per user (see __table_args__): one user's key never answers for another's.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    reservation_id: Mapped[int | None] = mapped_column(Integer)
    stock_sync: Mapped[StockSync] = mapped_column(_enum(StockSync), default=StockSync.PENDING)
    # The marketplace's own order id of an imported order (e.g. Amazon's 058-3718414-0463502).
    external_order_id: Mapped[str | None] = mapped_column(String(100))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    lines: Mapped[list["SaleLine"]] = relationship(
        lazy="raise", order_by="SaleLine.line_no", cascade="all, delete-orphan"
    )


class SaleLine(Base):
    """A sold product with its price, cost and category as they were at the moment of sale.

    ``sold_at`` repeats its sale's (which never changes), so that a report on a product or a
    category reads that product's or category's lines of a period by index, without the sales.
    """

    __tablename__ = "sale_lines"
    __table_args__ = (
        UniqueConstraint("sale_id", "line_no"),
        Index("ix_sale_lines_product_sold", "product_id", "sold_at", "sale_id"),
        Index("ix_sale_lines_category_sold", "category_id", "sold_at", "sale_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity", name="refund_within_sold"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sale_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("sales.id", ondelete="CASCADE")
    )
    line_no: Mapped[int] = mapped_column(Integer)
    sold_at: Mapped[datetime] = mapped_column(UTCDateTime)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    sku: Mapped[str] = mapped_column(String(64))
    product_name: Mapped[str] = mapped_column(String(200))
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL")
    )
    # The category's name as sold (kept if the category is renamed or deleted)
    category_name: Mapped[str | None] = mapped_column(String(120))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    unit_cost: Mapped[Decimal] = mapped_column(MONEY)
    line_total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    line_cost: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    refunded_quantity: Mapped[int] = mapped_column(Integer, default=0)
    refunded_total: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0.00"))
    refunded_cost: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0.00"))
    # Where the stock came from, as products_service allocated it:
    # [{"warehouse_id", "warehouse_code" (from the take; absent on older rows), "quantity"}].
    allocations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class SaleRefund(Base):
    """Stock and money coming back for some or all lines of a sale (a cancellation is all)."""

    __tablename__ = "sale_refunds"
    __table_args__ = (
        UniqueConstraint("created_by_id", "idempotency_key", name="uq_sale_refunds_user_key"),
        Index("ix_sale_refunds_stock_sync", "stock_sync", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sale_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("sales.id", ondelete="CASCADE"),
        index=True,
    )
    kind: Mapped[RefundKind] = mapped_column(_enum(RefundKind))
    units: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    reason: Mapped[str] = mapped_column(String(500), default="")
    # Unique per user (see __table_args__): one user's key never answers for another's.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    stock_sync: Mapped[StockSync] = mapped_column(_enum(StockSync), default=StockSync.PENDING)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lines: Mapped[list["SaleRefundLine"]] = relationship(
        lazy="raise", order_by="SaleRefundLine.id", cascade="all, delete-orphan"
    )


class SaleRefundLine(Base):
    __tablename__ = "sale_refund_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    refund_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("sale_refunds.id", ondelete="CASCADE"),
        index=True,
    )
    sale_line_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("sale_lines.id")
    )
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    cost: Mapped[Decimal] = mapped_column(Numeric(14, 2))


# --- report rollups (written by sales_service only, in each sale's and refund's transaction) ---

# Reports ask "the newest change to any sale?"; refunds touch old sales, so this is not max(id).
Index("ix_sales_updated_at", Sale.updated_at)

ROLLUP_MONEY = Numeric(18, 2)


class ReportSalesRollup(Base):
    """Net sales per UTC hour/day/month/year and channel (``shard`` is always 0).

    ``grain`` is the block length (see sales_service/reports/rollups.py); ``orders`` counts
    the sales with at least one unit not refunded.
    """

    __tablename__ = "report_sales_rollups"
    # The rows of one channel (0: all channels together) in time order, measures included,
    # so a series reads only them: the primary key orders every channel's rows of a block
    # together, and a daily series over three years read its hours among six times as many.
    __table_args__ = (
        Index(
            "ix_report_sales_rollups_channel",
            "grain",
            "channel_id",
            "bucket_start",
            "shard",
            "orders",
            "units",
            "revenue",
            "cost",
        ),
    )

    grain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    orders: Mapped[int] = mapped_column(BigInteger, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))
    cost: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))


class ReportProductRollup(Base):
    """Net sales per UTC month/year, product, channel and the line's category snapshot.

    ``category_key`` is the snapshot category id, 0 for none; ``orders`` counts the sales
    that hold the product with at least one unit not refunded.
    """

    __tablename__ = "report_product_rollups"
    __table_args__ = (
        Index("ix_report_product_rollups_product", "product_id", "grain", "bucket_start"),
    )

    grain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    category_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    orders: Mapped[int] = mapped_column(BigInteger, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))
    cost: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))


class ReportProductTotal(Base):
    """Net sales per UTC day/month/year and product, over all channels.

    The same sums as report_product_rollups without the channel and category split, and per
    day: what product rankings, product series and sales velocities read.
    """

    __tablename__ = "report_product_totals"
    __table_args__ = (
        Index("ix_report_product_totals_product", "product_id", "grain", "bucket_start"),
    )

    grain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    orders: Mapped[int] = mapped_column(BigInteger, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))
    cost: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))


class ReportCategoryRollup(Base):
    """Net sales per UTC day (all channels together, channel_id 0) or per UTC month/year and
    channel, per category.

    ``scope`` 0 holds the lines of exactly that category; scope 1 holds those of the
    category and every subcategory below it (per the category paths recorded in
    report_category_paths), so ``orders`` there counts each sale once per subtree.
    """

    __tablename__ = "report_category_rollups"
    __table_args__ = (
        Index(
            "ix_report_category_rollups_category", "category_key", "scope", "grain", "bucket_start"
        ),
    )

    grain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    scope: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    category_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    orders: Mapped[int] = mapped_column(BigInteger, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))
    cost: Mapped[Decimal] = mapped_column(ROLLUP_MONEY, default=Decimal("0.00"))


class ReportCategoryPath(Base):
    """The path each category had when the rollups first counted it under its ancestors.

    A category whose current path differs (it moved) or that is gone makes the category
    rollups stale: reports then read raw rows until the rollups are rebuilt.
    """

    __tablename__ = "report_category_paths"

    category_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    path: Mapped[str] = mapped_column(String(255))


# --- audit log: who changed catalog, prices, settings and users (see common/audit.py) ---


class AuditEntry(Base):
    """One change a person or a service made, written in the change's own transaction and
    never updated. ``changes`` maps each changed field to ``{"before": ..., "after": ...}``,
    secrets redacted. No foreign key to users: an entry keeps the actor's id and email as
    they were, whatever becomes of the account."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id", "id"),
        Index("ix_audit_log_actor", "actor_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)  # None: the system or a service
    actor_email: Mapped[str | None] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(60))  # "<entity>.<verb>", e.g. product.updated
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    changes: Mapped[dict[str, object]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(128))


# --- outboxes: every change to stock or sales, as events in commit-safe order ------------


class SaleStockStatus(enum.StrEnum):
    TAKEN = "taken"
    RETURNED = "returned"  # taken, then given back because no sale was recorded for it
    VOIDED = "voided"  # given up before any stock was taken: a late take is refused


class OutboxEvent:
    """One fact, appended in the same transaction as the change it describes.

    ``id`` is assigned at insert, so ids do not come in commit order; consumers read through
    common.outbox, which never passes over a lower id still to commit.
    """

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    type: Mapped[str] = mapped_column(String(60))
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProductsEvent(OutboxEvent, Base):
    """products_service's outbox: stock movements, sale stock takes, catalog changes."""

    __tablename__ = "products_outbox"
    __table_args__ = {"sqlite_autoincrement": True}  # never reuse an id after pruning


class SalesEvent(OutboxEvent, Base):
    """sales_service's outbox: sales recorded, refunded, cancelled."""

    __tablename__ = "sales_outbox"
    __table_args__ = {"sqlite_autoincrement": True}


class ImportJobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # written whole (or, a dry run, checked)
    REJECTED = "rejected"  # a problem in the file: nothing written, the report says which
    CANCELLED = "cancelled"  # stopped on request: nothing written
    FAILED = "failed"  # an unexpected error: nothing written


class ImportJob(Base):
    """An import running in the background: its progress while it runs, its report after.

    Written by the process that runs it (its progress in short transactions of their own);
    any replica answers its status and takes a cancel request, which the runner sees at its
    next batch."""

    __tablename__ = "import_jobs"
    __table_args__ = (Index("ix_import_jobs_service_id", "service", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str | None] = mapped_column(String(255))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ImportJobStatus] = mapped_column(
        _enum(ImportJobStatus), default=ImportJobStatus.QUEUED
    )
    stage: Mapped[str] = mapped_column(String(10), default="")
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    report: Mapped[dict[str, object] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(500))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # To start it again if its process dies: the import's options (JSON) and its upload,
    # spooled under this name in the service's spool directory.
    options: Mapped[dict[str, object] | None] = mapped_column(JSON)
    spool_name: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The runner that holds it: one started again elsewhere fences the one taken for dead.
    runner: Mapped[str | None] = mapped_column(String(32))


def new_generation() -> int:
    return secrets.randbits(62)


class OutboxPosition(Base):
    """How far one consumer has read one outbox; consumers lock their row while they work,
    so one replica at a time advances it."""

    __tablename__ = "outbox_positions"

    consumer: Mapped[str] = mapped_column(String(60), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    # The consumer's state must be rebuilt from the source rows before it reads on.
    needs_rebuild: Mapped[bool] = mapped_column(Boolean, default=False)
    # Drawn at random when the row is made and whenever the consumer's state is rebuilt from
    # the source rows (replaced, not added to): copies of that state compare it.
    generation: Mapped[int] = mapped_column(BigInteger, default=new_generation, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SaleStockTake(Base):
    """Stock products_service took for one sale attempt, by the attempt's key, all lines at
    once. ``lines`` is the answer given: each line's product snapshot and allocations."""

    __tablename__ = "sale_stock_takes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[SaleStockStatus] = mapped_column(_enum(SaleStockStatus))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lines: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SaleStockClaim(Base):
    """How sales_service settled one stock take: the sale it belongs to, or none (void).

    The sale's transaction and the reconciler that gives back orphaned stock both insert
    the take's key here; the primary key lets exactly one of them win.
    """

    __tablename__ = "sale_stock_claims"

    stock_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    sale_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("sales.id", ondelete="CASCADE"),
        unique=True,
    )
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- webhooks (common/webhooks) ---------------------------------------------------------


class WebhookDeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # queued, in flight or waiting for its next try
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    FAILED = "failed"  # retried for the whole retry window, then given up


class WebhookEndpoint(TimestampMixin, Base):
    """A receiver an admin registered: every matching event is POSTed to it, signed."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    # Exact types ("sale.recorded") or prefixes ending in "." ("sale."); empty: every event.
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # "whsec_" + base64 of the HMAC key (Standard Webhooks). The previous one still signs
    # too, until it expires, so receivers can switch keys without missing a message.
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    # Since when its deliveries fail without one succeeding in between (None: healthy).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # The newest event id of each outbox when the endpoint was created: it gets later ones.
    products_after_id: Mapped[int] = mapped_column(BigInteger, default=0)
    sales_after_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # The worker delivering its queue now (one at a time keeps the order), and until when.
    lease_token: Mapped[str | None] = mapped_column(String(32))
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event to send to one endpoint: the body as sent, its state and its next try."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "message_id"),
        # The worker's queue: an endpoint's pending deliveries in order (and its FK index).
        Index("ix_webhook_deliveries_queue", "endpoint_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The Webhook-Id header and the body's "id": "<source>-<event id>", the same for every
    # try and every endpoint, so a receiver can drop a message it already processed.
    message_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(10))  # products | sales | ping
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        _enum(WebhookDeliveryStatus), default=WebhookDeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Tries since it was last queued (created or redelivered): they set the backoff.
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    """One POST of a delivery: when, what the receiver answered (or what failed), how long."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    latency_ms: Mapped[int] = mapped_column(Integer)
