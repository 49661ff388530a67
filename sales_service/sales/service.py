"""Recording a sale: take its stock in products_service (one call), then write it.

A request spans two services, so it runs as three short transactions and holds no lock,
and no transaction, while it waits on products_service:

1. read: the caller (token not revoked, still a manager), a replay of its Idempotency-Key,
   the channel;
2. products_service takes the stock of every line, all or nothing, under a key new for this
   attempt (``stock_key``), and answers with each product's snapshot (price, cost, name,
   category); a retry of that call with the same key gets the same take;
3. write the sale, its lines, its event (sales_outbox) and its claim on the stock key, and
   commit.

Who owns a take is settled by ``sale_stock_claims``: the sale's transaction inserts the
stock key with its sale id; anyone giving the stock back first inserts the key with no sale.
The primary key lets exactly one of them win, so stock is never given back for a sale that
stands, and a sale never stands on stock that was given back.

When step 3 fails (or a twin request with the same Idempotency-Key wrote its sale first),
the attempt claims its key void and gives the stock back at once. When step 2 gets no
answer (down, frozen, too slow), the attempt claims the key void and answers 503 naming
products_service, with nothing recorded; asking products_service again then would only add
to the wait. A take that still lands under a void key, or one that nobody claimed because
the process died between 2 and 3, is given back by the reconciler
(sales_service/sales/reconciler.py), which reads products_service's outbox, after a grace
period.
"""

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NoReturn, Protocol

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from common import outbox
from common.actors import actor_emails
from common.auth.dependencies import check_caller, require_role
from common.auth.security import TokenClaims
from common.contracts import SaleStockLine, SaleStockTake, TakenLine
from common.db import utcnow
from common.errors import (
    AppError,
    NotFound,
    Unprocessable,
    UpstreamUnavailable,
)
from common.idempotency import replay, request_hash
from common.models import Product, Role, Sale, SaleLine, SalesChannel, SaleStatus, StockSync
from common.pagination import PageParams, Slice, first, paginate
from common.query import require_known_ids
from sales_service import events
from sales_service.clients.products import ProductsClient
from sales_service.reports.calendar import FIRST_DATE
from sales_service.sales import repository
from sales_service.sales.repository import ChannelRow
from sales_service.sales.schemas import ChannelRef, SaleCreate, SaleRead

logger = logging.getLogger(__name__)
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# The largest line or sale total the columns hold (NUMERIC(14, 2)).
MAX_TOTAL = Decimal("999999999999.99")
FUTURE_TOLERANCE = timedelta(minutes=5)
# The first instant on FIRST_DATE anywhere (UTC+14 is the earliest zone): older sales could
# never be reported on.
EARLIEST_SALE = datetime.combine(FIRST_DATE, time(), tzinfo=UTC) - timedelta(hours=14)
GIVE_BACK_BUDGET_SECONDS = 2.0  # best effort: the reconciler finishes a give-back that fails


@dataclass(frozen=True)
class Caller:
    """Who refunds a sale; their token is forwarded so ledger rows name them."""

    user_id: int
    token: str
    request_id: str = ""


@dataclass(frozen=True)
class Recorded:
    """The answer to a request to record a sale: the sale (lines loaded), whether this
    request made it, and its channel, so answering it needs no further read."""

    sale: Sale
    created: bool
    channel: ChannelRow


class SaleNotRecorded(AppError):
    """Writing the sale failed after its stock was reserved; the reservation was released."""

    status_code = 500
    code = "sale_not_recorded"


def _resolve_channel(data: SaleCreate, channel: ChannelRow | None) -> ChannelRow:
    """The channel the sale names (found by ``repository.sale_check``), if it may sell."""
    if data.channel_id is not None:
        field, named = "channel_id", str(data.channel_id)
    else:
        field, named = "channel_code", repr(data.channel_code)
    if channel is None:
        raise Unprocessable(f"Unknown sales channel {named}", field=field)
    if not channel.is_active:
        raise Unprocessable(f"Sales channel {named} is inactive", field=field)
    return channel


class Snapshot(Protocol):
    """What a sale line copies of its product: as products_service took it, or as the
    catalog has it (an imported order that takes no stock)."""

    @property
    def product_id(self) -> int: ...
    @property
    def sku(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def category_id(self) -> int | None: ...
    @property
    def category_name(self) -> str | None: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def cost_price(self) -> Decimal: ...


def line_row(
    line_no: int,
    sold_at: datetime,
    product: Snapshot,
    quantity: int,
    unit_price: Decimal | None,
    allocations: list[dict[str, Any]],
) -> dict[str, Any]:
    """A sale line's columns: its product's snapshot, its unit price (the product's unless
    given) and cost in whole cents, and their totals."""
    price = (unit_price if unit_price is not None else product.price).quantize(CENT)
    cost = product.cost_price.quantize(CENT)
    return {
        "line_no": line_no,
        "sold_at": sold_at,
        "product_id": product.product_id,
        "sku": product.sku,
        "product_name": product.name,
        "category_id": product.category_id,
        "category_name": product.category_name,
        "quantity": quantity,
        "unit_price": price,
        "unit_cost": cost,
        "line_total": price * quantity,
        "line_cost": cost * quantity,
        "refunded_quantity": 0,
        "refunded_total": ZERO,
        "refunded_cost": ZERO,
        "allocations": allocations,
    }


def sale_row(
    lines: Sequence[Mapping[str, Any]],
    *,
    channel_id: int,
    sold_at: datetime,
    note: str,
    key: str | None,
    digest: str,
    actor_id: int | None,
) -> dict[str, Any]:
    """The columns of a new sale of these lines (``line_row``): its totals, and a temporary
    number, replaced by S-<id> once the id is known (``repository.sale_number``)."""
    now = utcnow()
    return {
        "number": f"T-{uuid.uuid4().hex[:28]}",
        "channel_id": channel_id,
        "status": SaleStatus.COMPLETED,
        "sold_at": sold_at,
        "units": sum(line["quantity"] for line in lines),
        "total": sum((line["line_total"] for line in lines), ZERO),
        "cost_total": sum((line["line_cost"] for line in lines), ZERO),
        "refunded_units": 0,
        "refunded_total": ZERO,
        "refunded_cost": ZERO,
        "note": note,
        "idempotency_key": key,
        "request_hash": digest,
        "reservation_id": None,
        "stock_sync": StockSync.DONE,
        "created_by_id": actor_id,
        "created_at": now,
        "updated_at": now,
    }


def sale_of_rows(sale: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> Sale:
    """The sale (not yet written) as an object, its lines loaded."""
    return Sale(**sale, lines=[SaleLine(**line) for line in lines])


def build_sale(
    data: SaleCreate,
    channel: ChannelRow,
    taken: Sequence[TakenLine],
    *,
    key: str | None,
    digest: str,
    actor_id: int | None,
) -> Sale:
    """The sale (not yet written) of these lines, each with its product's snapshot as taken."""
    # Stored in UTC, and answered so: the instant the caller named, not its offset.
    sold_at = (data.sold_at or utcnow()).astimezone(UTC)
    lines = [
        line_row(
            product.line_no,
            sold_at,
            product,
            line.quantity,
            line.unit_price,
            [a.model_dump() for a in product.allocations],
        )
        for line, product in zip(data.lines, taken, strict=True)
    ]
    sale = sale_row(
        lines,
        channel_id=channel.id,
        sold_at=sold_at,
        note=data.note,
        key=key,
        digest=digest,
        actor_id=actor_id,
    )
    return sale_of_rows(sale, lines)


def _replay(existing: Sale, digest: str) -> Sale:
    return replay(
        existing,
        digest,
        key=existing.idempotency_key or "",
        field="header.Idempotency-Key",
        used_for=f"sale {existing.number}",
        sale_id=existing.id,
    )


def _too_large(what: str, total: Decimal, field: str) -> Unprocessable:
    return Unprocessable(
        f"{what} would be {total:,}, more than the {MAX_TOTAL:,} a sale can hold; "
        "split it into several sales",
        field=field,
    )


def _check_given_prices(data: SaleCreate) -> None:
    """The totals that the request alone decides, refused before any stock is taken."""
    for number, line in enumerate(data.lines, start=1):
        if line.unit_price is not None and line.unit_price * line.quantity > MAX_TOTAL:
            total = line.unit_price * line.quantity
            raise _too_large(f"Line {number}'s total", total, f"body.lines.{number - 1}")


def check_totals(line_totals: Iterable[Decimal], total: Decimal, cost_total: Decimal) -> None:
    """Refuse a sale whose line totals or totals the columns cannot hold."""
    for index, line_total in enumerate(line_totals):
        if line_total > MAX_TOTAL:
            raise _too_large(f"Line {index + 1}'s total", line_total, f"body.lines.{index}")
    if total > MAX_TOTAL or cost_total > MAX_TOTAL:
        raise _too_large("The sale's total", max(total, cost_total), "body.lines")


def _check_sold_at(data: SaleCreate) -> None:
    if data.sold_at is not None and data.sold_at > utcnow() + FUTURE_TOLERANCE:
        raise Unprocessable("sold_at is in the future", field="body.sold_at")
    if data.sold_at is not None and data.sold_at < EARLIEST_SALE:
        raise Unprocessable(
            f"sold_at is before {FIRST_DATE.isoformat()}, the first day reports cover",
            field="body.sold_at",
        )


@dataclass(frozen=True)
class _Checked:
    """What step 1 found: who sells, through which channel, and the request's digest."""

    user_id: int
    channel: ChannelRow
    digest: str


@dataclass(frozen=True)
class _NotWritten:
    """Step 3 failed and was rolled back: why, and the twin sale that won, if one did."""

    error: Exception
    twin: Sale | None
    twin_channel: ChannelRow | None


def record_sale(
    *,
    session: Session,
    data: SaleCreate,
    key: str | None,
    claims: TokenClaims,
    request_id: str,
    products_client: ProductsClient,
) -> Recorded:
    """Record the sale (see the module docstring); returns it and whether it is new.

    Each transaction commits before the next step, so no lock is held while products_service
    works, nor while this request waits for a worker thread. ``claims`` are the caller's
    token's, checked against the database in step 1 rather than in a transaction of their
    own."""
    checked = _check(session, data, key, claims)
    if isinstance(checked, Recorded):
        return checked
    return take_and_record(
        session=session,
        data=data,
        channel=checked.channel,
        key=key,
        digest=checked.digest,
        actor_id=checked.user_id,
        request_id=request_id,
        products_client=products_client,
    )


def take_and_record(
    *,
    session: Session,
    data: SaleCreate,
    channel: ChannelRow,
    key: str | None,
    digest: str,
    actor_id: int | None,
    request_id: str,
    products_client: ProductsClient,
    external_order_id: str | None = None,
) -> Recorded:
    """Steps 2 and 3: take the stock in products_service, then write the sale (committed);
    the caller has done step 1 (who sells, through which channel, a replay). An imported
    order that takes stock comes here too, with its marketplace order id."""
    stock_key = uuid.uuid4().hex
    try:
        taken = products_client.take_sale_stock(
            SaleStockTake(
                key=stock_key,
                actor_id=actor_id,
                lines=[
                    SaleStockLine(product_id=ln.product_id, quantity=ln.quantity)
                    for ln in data.lines
                ],
            ),
            request_id=request_id,
        )
    except UpstreamUnavailable as exc:
        # products_service just failed us: asking it again now would only add to the wait.
        # The void claim makes the reconciler give back a take that still lands.
        _claim_void(session, stock_key)
        raise UpstreamUnavailable(
            f"Could not take stock: {exc.detail}; nothing was recorded", **exc.context
        ) from exc

    sale = build_sale(data, channel, taken.lines, key=key, digest=digest, actor_id=actor_id)
    sale.external_order_id = external_order_id
    try:
        # with the products' own prices, known only now
        check_totals([line.line_total for line in sale.lines], sale.total, sale.cost_total)
    except Unprocessable:
        if _claim_void(session, stock_key):
            _give_back(products_client, stock_key, request_id)
        raise
    written = _write(session, sale, stock_key, key)
    if not isinstance(written, _NotWritten):
        return Recorded(sale, created=True, channel=channel)
    if _claim_void(session, stock_key):
        _give_back(products_client, stock_key, request_id)
    if written.twin is not None and written.twin_channel is not None:
        twin = _replay(written.twin, digest)
        return Recorded(twin, created=False, channel=written.twin_channel)
    _raise_not_recorded(written.error, stock_key)


def _check(
    session: Session, data: SaleCreate, key: str | None, claims: TokenClaims
) -> _Checked | Recorded:
    """Step 1, one read transaction of one statement (a replay aside): the caller as stored,
    a replay, the channel."""
    found = repository.sale_check(
        session,
        user_id=claims.user_id,
        jti=claims.jti,
        key=key,
        channel_id=data.channel_id,
        code=data.channel_code,
    )
    user = check_caller(found.caller, claims)
    require_role(user.role, Role.MANAGER)  # as stored: the token may predate a demotion
    digest = request_hash(data.model_dump(mode="json"))
    if found.replay_id is not None:
        existing = repository.get_with_lines(session, found.replay_id)
        assert existing is not None  # a sale is never deleted
        replay = _replay(existing, digest)
        return Recorded(replay, created=False, channel=_channel_of(session, replay))
    _check_sold_at(data)
    _check_given_prices(data)
    channel = _resolve_channel(data, found.channel)
    session.commit()  # hold nothing while products_service works
    return _Checked(user_id=user.id, channel=channel, digest=digest)


def _channel_of(session: Session, sale: Sale) -> ChannelRow:
    channel = repository.channel_row(session, channel_id=sale.channel_id)
    assert channel is not None  # a sale's channel is never deleted (ON DELETE RESTRICT)
    return channel


def _write(session: Session, sale: Sale, stock_key: str, key: str | None) -> _NotWritten | None:
    """Step 3, one transaction: the sale, its lines, its event and its claim."""
    try:
        repository.add_sale(session, sale, stock_key=stock_key)
        outbox.append(session, outbox.SALES_OUTBOX, [events.sale_recorded(sale)])
        session.commit()
        return None
    except Exception as exc:
        session.rollback()
        if isinstance(exc, OperationalError) and _sale_was_written(session, stock_key):
            # The COMMIT landed although its answer was lost: the sale stands on its stock.
            logger.warning("sale with stock key %s: commit answer lost", stock_key)
            raise
        # A request with the same key wrote its sale first (our insert waited for its commit).
        twin = (
            repository.find_by_key(session, key, sale.created_by_id)
            if key is not None and isinstance(exc, IntegrityError)
            else None
        )
        channel = _channel_of(session, twin) if twin is not None else None
        return _NotWritten(exc, twin, channel)


def _sale_was_written(session: Session, stock_key: str) -> bool:
    """Whether a sale claimed this stock key (after a COMMIT whose answer was lost); True
    when that cannot be told, so the stock is left to the reconciler rather than given back."""
    try:
        found = repository.claim_of(session, stock_key)
        session.commit()
        return found is not None
    except Exception:
        session.rollback()
        return True


def _claim_void(session: Session, stock_key: str) -> bool:
    """Claim the stock key for no sale; False when a sale claimed it (its stock stays taken)
    or when the claim could not be written (then the reconciler decides, as after a crash).

    Once claimed void, the reconciler gives back a take under the key whenever one shows up
    in products_service's outbox (if none ever does, there is nothing to give back).
    """
    try:
        claimed = repository.claim_void(session, stock_key)
        session.commit()
        return claimed
    except Exception:
        session.rollback()
        logger.exception("stock key %s: could not claim it void; the reconciler will", stock_key)
        return False


def _give_back(products_client: ProductsClient, stock_key: str, request_id: str) -> None:
    """Ask products_service for the stock back now; if it cannot answer, the reconciler will."""
    try:
        products_client.return_sale_stock(
            stock_key, request_id=request_id, budget_seconds=GIVE_BACK_BUDGET_SECONDS
        )
    except AppError as exc:
        logger.warning(
            "stock key %s: could not give the stock back now (the reconciler will): %s",
            stock_key,
            exc.detail,
        )


def _raise_not_recorded(exc: Exception, stock_key: str) -> NoReturn:
    """Re-raise a write failure, in the one error shape, saying the stock was given back."""
    logger.error("sale not recorded; stock key %s given back: %s", stock_key, exc)
    if isinstance(exc, AppError | OperationalError):
        raise exc  # already mapped (e.g. 503 database_busy, which a client may retry)
    raise SaleNotRecorded(
        "The sale could not be written; its stock was given back and nothing was recorded",
        stock_key=stock_key,
    ) from exc


def sale_read(sale: Sale, channel: SalesChannel | ChannelRow, actor_email: str | None) -> SaleRead:
    return SaleRead.model_validate(
        {
            **{c: getattr(sale, c) for c in SaleRead.model_fields if hasattr(sale, c)},
            "channel": ChannelRef.model_validate(channel),
            "net_total": sale.total - sale.refunded_total,
            "actor_id": sale.created_by_id,
            "actor_email": actor_email,
            "lines": sale.lines,
        }
    )


def read_sale(
    session: Session, sale: Sale, channel: SalesChannel | ChannelRow | None = None
) -> SaleRead:
    """The sale as the API shows it, reading its channel (unless given) and who made it."""
    return sale_read(
        sale,
        channel or session.get_one(SalesChannel, sale.channel_id),
        actor_emails(session, [sale.created_by_id]).get(sale.created_by_id or 0),
    )


def require_known(
    session: Session, *, product_ids: Iterable[int], channel_ids: Iterable[int]
) -> None:
    """The list's product and channel filters name rows that exist (else a 422 naming the
    unknown ones); ``common.query.category_paths`` checks the categories."""
    require_known_ids(session, Product, product_ids, "product")
    require_known_ids(session, SalesChannel, channel_ids, "channel")


def list_sales(
    *, session: Session, filters: repository.SaleFilters, page: PageParams, order_by: list[Any]
) -> Slice[SaleRead]:
    """One page of the sales matching the filters (``order_by`` ends with the id)."""
    found = paginate(session, repository.list_query(filters), page, order_by).map(first)
    channels = repository.channels_by_id(session, {sale.channel_id for sale in found.rows})
    emails = actor_emails(session, [sale.created_by_id for sale in found.rows])
    return found.map(
        lambda sale: sale_read(sale, channels[sale.channel_id], emails.get(sale.created_by_id or 0))
    )


def get_sale(*, session: Session, sale_id: int) -> Sale:
    sale = repository.get_with_lines(session, sale_id)
    if sale is None:
        raise NotFound(f"Sale {sale_id} not found", resource="sale", id=sale_id)
    return sale
