"""Recording a sale across the two services: reserve -> record -> commit.

This is the one place where a request spans several transactions, because it spans two
services and must hold no database lock while it waits on the other one (on the embedded
SQLite file both services share, a held write lock would block products_service itself):

1. read and validate (channel, products, prices), then end that read transaction;
2. reserve every line in products_service (all or nothing). The reservation's key is new
   for each attempt at recording a sale, so the reservation belongs to this request alone:
   the client's own retries of the call reuse it, but no other request ever relies on it;
3. write the sale with its snapshots and commit; if that fails, release the reservation;
4. commit the reservation (its stock becomes ``sale`` ledger movements) and mark the sale
   ``stock_sync=done``. If products_service cannot take it now, the sale stays ``pending``
   and the background sync (sales_service/stock_sync.py) retries until it lands. Only a
   definitive refusal (the reservation was released, or it expired and its stock was sold
   meanwhile) marks the sale ``failed``: the sale stands, its stock was never taken, and
   someone must look at it.

Two requests with the same Idempotency-Key may run at once (a client retrying before its
first answer arrived). Each reserves for itself; the unique key on ``sales`` lets one write
the sale, and the other, on finding it, releases its own reservation and answers with that
sale. So a retry never takes stock twice, and never releases stock the sale relies on.

A process that dies after 2 leaves a reservation that expires and returns its stock; one
that dies after 3 leaves a pending sale that the sync commits on restart (products_service
still commits an expired reservation when its stock is free).
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import NoReturn

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from common.contracts import ReservationRead, ReserveLine, ReserveRequest
from common.db import utcnow
from common.errors import (
    AppError,
    IdempotencyKeyReused,
    NotFound,
    Unprocessable,
    UpstreamUnavailable,
)
from common.idempotency import request_hash
from common.models import (
    Product,
    ProductStatus,
    ReservationStatus,
    Sale,
    SaleLine,
    SalesChannel,
    StockSync,
)
from sales_service.clients.products import UPSTREAM, ProductsClient
from sales_service.reports import rollups
from sales_service.reports.service import FIRST_DATE
from sales_service.sales import repository
from sales_service.sales.schemas import SaleCreate

logger = logging.getLogger(__name__)
CENT = Decimal("0.01")
FUTURE_TOLERANCE = timedelta(minutes=5)
# The first instant on FIRST_DATE anywhere (UTC+14 is the earliest zone): older sales could
# never be reported on.
EARLIEST_SALE = datetime.combine(FIRST_DATE, time(), tzinfo=UTC) - timedelta(hours=14)
MAX_REFERENCE_LENGTH = 120  # products_service's reservation reference column


@dataclass(frozen=True)
class Caller:
    """Who records the sale; their token is forwarded so ledger rows name them."""

    user_id: int
    token: str
    request_id: str = ""


@dataclass(frozen=True)
class Recorded:
    """The answer to a request to record a sale: the sale, and whether this request made it.

    A new sale comes with the channel it was validated against, so answering it needs no
    second read of the channel (the session's identity map only holds objects weakly).
    """

    sale: Sale
    created: bool
    channel: SalesChannel | None = None


class SaleNotRecorded(AppError):
    """Writing the sale failed after its stock was reserved; the reservation was released."""

    status_code = 500
    code = "sale_not_recorded"


def _resolve_channel(session: Session, data: SaleCreate) -> SalesChannel:
    if data.channel_id is not None:
        channel = session.get(SalesChannel, data.channel_id)
        field, named = "channel_id", str(data.channel_id)
    else:
        channel = repository.channel_by_code(session, data.channel_code or "")
        field, named = "channel_code", repr(data.channel_code)
    if channel is None:
        raise Unprocessable(f"Unknown sales channel {named}", field=field)
    if not channel.is_active:
        raise Unprocessable(f"Sales channel {named} is inactive", field=field)
    return channel


def _check_products(session: Session, data: SaleCreate) -> dict[int, Product]:
    """Every line names an existing, active, unarchived product; else one 422 naming each."""
    products = repository.products_by_id(session, {line.product_id for line in data.lines})
    problems = []
    for line_no, line in enumerate(data.lines, start=1):
        product = products.get(line.product_id)
        if product is None:
            reason = "unknown product"
        elif product.archived_at is not None:
            reason = "product is archived"
        elif product.status is not ProductStatus.ACTIVE:
            reason = f"product is {product.status.value}"
        else:
            continue
        problems.append({"line_no": line_no, "product_id": line.product_id, "reason": reason})
    if problems:
        summary = "; ".join(
            f"line {p['line_no']} (product {p['product_id']}): {p['reason']}" for p in problems
        )
        raise Unprocessable(f"Cannot sell: {summary}", lines=problems)
    return products


def _reference(key: str | None) -> str:
    """What products_service writes on the ledger rows: the sale's key when there is one."""
    if key is None:
        return "sale"
    reference = f"sale:{key}"
    if len(reference) <= MAX_REFERENCE_LENGTH:
        return reference
    return f"sale:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def _build_sale(
    data: SaleCreate,
    channel: SalesChannel,
    products: dict[int, Product],
    reservation: ReservationRead,
    *,
    key: str | None,
    digest: str,
    actor_id: int,
) -> Sale:
    # Stored in UTC, and answered so: the instant the caller named, not its offset.
    sold_at = (data.sold_at or utcnow()).astimezone(UTC)
    allocations: dict[int, list[dict[str, int]]] = {}
    for held in reservation.lines:
        allocations.setdefault(held.line_no, []).append(
            {"warehouse_id": held.warehouse_id, "quantity": held.quantity}
        )
    lines = []
    for line_no, line in enumerate(data.lines, start=1):
        product = products[line.product_id]
        unit_price = (line.unit_price if line.unit_price is not None else product.price).quantize(
            CENT
        )
        unit_cost = product.cost_price.quantize(CENT)
        lines.append(
            SaleLine(
                line_no=line_no,
                product_id=product.id,
                sku=product.sku,
                product_name=product.name,
                category_id=product.category_id,
                quantity=line.quantity,
                unit_price=unit_price,
                unit_cost=unit_cost,
                line_total=unit_price * line.quantity,
                line_cost=unit_cost * line.quantity,
                refunded_quantity=0,
                refunded_total=Decimal("0.00"),
                refunded_cost=Decimal("0.00"),
                allocations=allocations.get(line_no, []),
            )
        )
    return Sale(
        number=f"T-{uuid.uuid4().hex[:28]}",  # replaced by S-<id> once the id is known
        channel_id=channel.id,
        sold_at=sold_at,
        units=sum(line.quantity for line in lines),
        total=sum((line.line_total for line in lines), Decimal("0.00")),
        cost_total=sum((line.line_cost for line in lines), Decimal("0.00")),
        refunded_units=0,
        refunded_total=Decimal("0.00"),
        refunded_cost=Decimal("0.00"),
        note=data.note,
        idempotency_key=key,
        request_hash=digest,
        reservation_id=reservation.id,
        stock_sync=StockSync.PENDING,
        created_by_id=actor_id,
        lines=lines,
    )


def _replay(existing: Sale, digest: str) -> Sale:
    if existing.request_hash != digest:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {existing.idempotency_key!r} was already used for sale "
            f"{existing.number} with a different request body",
            field="Idempotency-Key",
            sale_id=existing.id,
        )
    return existing


def _reserve(
    data: SaleCreate, key: str | None, caller: Caller, products_client: ProductsClient
) -> ReservationRead:
    """Hold the stock of every line under a key of this attempt's own (see the module doc)."""
    try:
        reservation = products_client.reserve(
            ReserveRequest(
                idempotency_key=f"sale:{uuid.uuid4().hex}",
                reference=_reference(key),
                lines=[
                    ReserveLine(product_id=ln.product_id, quantity=ln.quantity) for ln in data.lines
                ],
            ),
            token=caller.token,
            request_id=caller.request_id,
        )
    except UpstreamUnavailable as exc:
        raise UpstreamUnavailable(
            f"Could not reserve stock: {exc.detail}; nothing was recorded", **exc.context
        ) from exc
    if reservation.status is not ReservationStatus.ACTIVE:
        # Only when a retried reserve was answered after the TTL passed: nothing is held.
        raise UpstreamUnavailable(
            f"{UPSTREAM} held the stock too late (reservation {reservation.id} is "
            f"{reservation.status.value}); nothing was recorded",
            upstream=UPSTREAM,
        )
    return reservation


def record_sale(
    *,
    session: Session,
    data: SaleCreate,
    key: str | None,
    caller: Caller,
    products_client: ProductsClient,
) -> Recorded:
    """Record the sale (see the module docstring); returns it and whether it is new."""
    digest = request_hash(data.model_dump(mode="json"))
    if key is not None:
        existing = repository.find_by_key(session, key)
        if existing is not None:
            return Recorded(_replay(existing, digest), created=False)
    if data.sold_at is not None and data.sold_at > utcnow() + FUTURE_TOLERANCE:
        raise Unprocessable("sold_at is in the future", field="body.sold_at")
    if data.sold_at is not None and data.sold_at < EARLIEST_SALE:
        raise Unprocessable(
            f"sold_at is before {FIRST_DATE.isoformat()}, the first day reports cover",
            field="body.sold_at",
        )
    channel = _resolve_channel(session, data)
    products = _check_products(session, data)
    session.commit()  # step 1 done: hold nothing while products_service works

    reservation = _reserve(data, key, caller, products_client)

    sale = _build_sale(
        data, channel, products, reservation, key=key, digest=digest, actor_id=caller.user_id
    )
    try:
        repository.add_sale(session, sale)
        rollups.record_sale(session, sale)
    except Exception as exc:
        session.rollback()
        _release_quietly(products_client, reservation.id, caller)  # ours alone, see above
        # A request with the same key wrote its sale first (our insert waited for its commit).
        twin = (
            repository.find_by_key(session, key)
            if key is not None and isinstance(exc, IntegrityError)
            else None
        )
        if twin is not None:
            return Recorded(_replay(twin, digest), created=False)
        _raise_not_recorded(exc, reservation.id)
    sale_id = sale.id
    try:
        session.commit()
    except Exception as exc:
        session.rollback()
        if _sale_was_written(session, sale_id) is not False:
            # The COMMIT landed although its answer was lost (or we cannot tell): keep the
            # stock held; the sync commits it, or it expires if there is no sale after all.
            logger.warning("sale %s: commit answer lost; leaving its stock held", sale_id)
            raise
        _release_quietly(products_client, reservation.id, caller)
        _raise_not_recorded(exc, reservation.id)

    commit_stock(
        session=session,
        sale=sale,
        products_client=products_client,
        token=caller.token,
        request_id=caller.request_id,
    )
    return Recorded(sale, created=True, channel=channel)


def _sale_was_written(session: Session, sale_id: int) -> bool | None:
    """Whether the sale row exists after a failed COMMIT; None when that cannot be told."""
    try:
        found = repository.get_with_lines(session, sale_id) is not None
        session.commit()
        return found
    except Exception:
        session.rollback()
        return None


def _raise_not_recorded(exc: Exception, reservation_id: int) -> NoReturn:
    """Re-raise a write failure, in the one error shape, saying the stock was let go."""
    logger.error("sale not recorded; reservation %s released: %s", reservation_id, exc)
    if isinstance(exc, AppError | OperationalError):
        raise exc  # already mapped (e.g. 503 database_busy, which a client may retry)
    raise SaleNotRecorded(
        "The sale could not be written; its stock reservation was released and nothing "
        "was recorded",
        reservation_id=reservation_id,
    ) from exc


# 409: the reservation was released, or it expired and its stock is gone; 404: it is gone.
# Repeating the commit cannot change these answers.
DEFINITIVE_REFUSALS = {404, 409}


def commit_stock(
    *,
    session: Session,
    sale: Sale,
    products_client: ProductsClient,
    token: str,
    request_id: str = "",
) -> None:
    """Turn the sale's reservation into ledger sales; leaves it pending if that fails now.

    Unreachable, slow, 5xx, or refusing this caller's token (401/403, e.g. it expired
    meanwhile): the sale stays ``pending`` and the sync retries with its own credential.
    A definitive refusal (404/409) marks it ``failed``: the sale stands, its stock was not
    taken, and only a person can settle it.
    """
    if sale.reservation_id is None or sale.stock_sync is not StockSync.PENDING:
        return
    try:
        products_client.commit(sale.reservation_id, token=token, request_id=request_id)
    except AppError as exc:
        if exc.status_code not in DEFINITIVE_REFUSALS:
            logger.warning("sale %s: stock commit deferred: %s", sale.id, exc.detail)
            return
        logger.error(
            "sale %s: stock commit refused, marked failed: %s %s",
            sale.id,
            exc.code,
            exc.detail,
        )
        sale.stock_sync = StockSync.FAILED
        session.commit()
        return
    sale.stock_sync = StockSync.DONE
    session.commit()


def _release_quietly(products_client: ProductsClient, reservation_id: int, caller: Caller) -> None:
    """Best effort: if this fails too, the reservation's expiry returns the stock."""
    try:
        products_client.release(reservation_id, token=caller.token, request_id=caller.request_id)
    except AppError as exc:
        logger.warning(
            "could not release reservation %s (it will expire): %s", reservation_id, exc.detail
        )


def get_sale(*, session: Session, sale_id: int) -> Sale:
    sale = repository.get_with_lines(session, sale_id)
    if sale is None:
        raise NotFound(f"Sale {sale_id} not found", resource="sale", id=sale_id)
    return sale
