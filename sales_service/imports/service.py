"""Orders imported from a marketplace's order report or a generic CSV: each order becomes a
sale of its channel, with its lines' snapshots from the catalog and the marketplace's order
id, so importing the file again (or a newer, overlapping export) adds nothing twice.

Profiles name the columns: Amazon's order reports (the tab-separated flat files, e.g. "All
Orders"): ``amazon-order-id``, ``purchase-date`` (ISO 8601 with its offset), ``sku``,
``quantity`` (or ``quantity-purchased``), ``item-price`` (the line's total, not a unit
price) and ``order-status``; Walmart's Seller Center order export (the .xlsx it downloads, or
a CSV of it; the header as public parsers of that export read it, tests/sales_service/
test_order_import.py ``WALMART_HEADER``): ``PO#`` (the purchase order, one per order; its
lines are numbered by ``Line#``), ``Order Date``, ``SKU``, ``Qty``, ``Item Cost`` (a unit
price) and ``Status`` (Walmart spells it ``Canceled``); the generic profile reads
``order_id``, ``sold_at``, ``sku``, ``quantity``, ``unit_price`` and ``status``, or the
file's own names mapped onto them. Other columns are read past.

- The lines of one order are consecutive rows (as both marketplaces write them); an order
  id met again further on is refused.
- A date without an offset is read in the ``timezone`` given (the channel's; default the
  store's), and the report says so.
- Cancelled orders are skipped and counted, or (``cancelled="import"``) written as sales
  cancelled at once, announced as recorded then cancelled; Amazon's pending orders (no price
  yet) are always skipped. An order imported before (same channel, same order id) is
  counted unchanged.
- By default the orders are history and take no stock (the shelves are the stock count's
  business), so they have no allocations and a later refund puts nothing back on a shelf;
  the whole file is written in one transaction, all or nothing (common.imports). With
  ``take_stock`` (today's orders) each order takes its stock as a sale through the API does,
  one by one after the whole file checked clean, and the report says which landed.
- Each sale's ``sale.recorded`` event is written with it, so the report rollups count it
  like any other sale.
- History is priced by the same functions as a sale through the API
  (``sales.service.line_row``, ``sale_row``) and written a batch at a time as rows, in a few
  multi-row statements (``sales.repository.insert_imported_sales``), with no object per sale;
  only the few cancelled orders are written one by one as objects, with their cancellation.
"""

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from common import outbox
from common.db import utcnow
from common.delimited import Columns, Encoding, Problem, Record, TableFormat, problem
from common.errors import AppError, Unprocessable
from common.imports import ImportFile, ImportReport, Progress, Tally, run_import
from common.models import Sale, SaleRefund
from common.money import MONEY_PATTERN
from sales_service import events
from sales_service.clients.products import ProductsClient
from sales_service.imports import repository
from sales_service.refunds.service import cancellation_of_import
from sales_service.sales import repository as sales_repository
from sales_service.sales.repository import ChannelRow
from sales_service.sales.schemas import MAX_SALE_LINES, SaleCreate
from sales_service.sales.service import (
    EARLIEST_SALE,
    FUTURE_TOLERANCE,
    check_totals,
    line_row,
    sale_of_rows,
    sale_row,
    take_and_record,
)

MAX_QUANTITY = 100_000  # a sale line's
ZERO = Decimal("0.00")
ORDER_ID_LENGTH = 100  # sales.external_order_id
FIELDS = ("order_id", "sold_at", "sku", "quantity", "price", "status")
_US_DATES = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y")


class OrderProfile(enum.StrEnum):
    GENERIC = "generic"
    AMAZON = "amazon"
    WALMART = "walmart"


@dataclass(frozen=True)
class Profile:
    """How one kind of order file names things."""

    headers: Mapping[str, str]  # a header (trimmed, lower case, spaces as _) -> our field
    price: Literal["unit", "line_total"]
    table_format: TableFormat | None  # None: by the file name
    channel_code: str | None  # the channel its orders go to unless the caller names one
    cancelled_statuses: frozenset[str] = frozenset({"cancelled", "canceled"})
    pending_statuses: frozenset[str] = frozenset()  # not a sale yet: always skipped
    continuations: bool = False  # rows with no SKU and no quantity continue the order above


PROFILES = {
    OrderProfile.AMAZON: Profile(
        headers={
            "amazon-order-id": "order_id",
            "purchase-date": "sold_at",
            "sku": "sku",
            "quantity": "quantity",
            "quantity-purchased": "quantity",
            "item-price": "price",
            "order-status": "status",
        },
        price="line_total",
        table_format=TableFormat.TSV,
        channel_code="amazon",
        pending_statuses=frozenset({"pending"}),
        continuations=True,
    ),
    OrderProfile.WALMART: Profile(
        headers={
            "po#": "order_id",
            "order_date": "sold_at",
            "sku": "sku",
            "qty": "quantity",
            "item_cost": "price",
            "status": "status",
        },
        price="unit",
        table_format=TableFormat.CSV,
        channel_code="walmart",
    ),
    OrderProfile.GENERIC: Profile(
        headers={name: name for name in FIELDS if name != "price"} | {"unit_price": "price"},
        price="unit",
        table_format=None,
        channel_code=None,
    ),
}


@dataclass(frozen=True)
class OrderImportOptions:
    """The file, its profile, where its orders go, and the zone of dates without one."""

    profile: OrderProfile
    timezone: str
    channel_code: str | None = None  # default: the profile's
    column_map: Mapping[str, str] = field(default_factory=dict)  # file header -> our field
    file_name: str | None = None
    encoding: Encoding = Encoding.UTF8
    table_format: TableFormat | None = None  # default: the profile's
    dry_run: bool = False
    actor_id: int | None = None
    # Cancelled orders: left out, or recorded as sales cancelled at once (no revenue, no
    # stock), so the history shows them.
    cancelled: Literal["skip", "import"] = "skip"
    # Each order takes its stock, as a sale does (the caller hands import_orders the client
    # to take it with): today's orders, after the stock count.
    take_stock: bool = False


@dataclass(frozen=True)
class TakeStock:
    """Orders take their stock: through this client, as sales through the API do."""

    products_client: ProductsClient
    request_id: str = ""


@dataclass(frozen=True)
class _Planned:
    """An order checked and priced: the sale's row and its lines' rows, and for an order
    cancelled on its marketplace, the sale as an object with its cancellation applied."""

    order: list["_Line"]
    sale: dict[str, Any]
    lines: list[dict[str, Any]]
    cancelled: tuple[Sale, SaleRefund] | None


@dataclass(frozen=True)
class _Line:
    row: int
    order_id: str
    sold_at: datetime | None
    offset_given: bool
    sku: str
    quantity: int
    unit_price: Decimal | None
    status: str
    continuation: bool = False  # an Amazon row that only carries more of the order's data


def _columns(profile: Profile, column_map: Mapping[str, str]) -> Columns:
    plain = Columns(required=())
    aliases = {plain.canonical(header): name for header, name in profile.headers.items()}
    for header, name in column_map.items():
        if name not in FIELDS:
            raise Unprocessable(
                f"map: {name!r} is not one of {', '.join(FIELDS)}", field="query.map"
            )
        aliases[plain.canonical(header)] = name
    return Columns(
        required=("order_id", "sold_at", "sku", "quantity", "price"),
        optional=("status",),
        aliases=aliases,
        ignore_unknown=True,
    )


def _instant(text: str, zone: ZoneInfo) -> tuple[datetime, bool] | None:
    """The instant, and whether the text gave its offset (else it is read in ``zone``)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for pattern in _US_DATES:
            try:
                # Read in the zone right below (a US date carries no offset).
                parsed = datetime.strptime(text, pattern)  # noqa: DTZ007
                break
            except ValueError:
                continue
        else:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=zone), False
    return parsed, True


class _OrderImporter:
    def __init__(
        self,
        session: Session,
        tally: Tally,
        options: OrderImportOptions,
        channel: ChannelRow,
        zone: ZoneInfo,
        stock: "TakeStock | None",
    ) -> None:
        self.session = session
        self.stock = stock
        self.tally = tally
        self.options = options
        self.profile = PROFILES[options.profile]
        self.columns = _columns(self.profile, options.column_map)
        self.channel = channel
        self.zone = zone
        self.held: list[_Line] = []  # the last order of a batch: it may go on in the next
        self.note = f"imported from {options.file_name or 'a file'}"[:500]
        self.zone_noted = False
        self.zero_noted = False

    def check(self, record: Record) -> _Line | list[Problem]:
        row, cells = record.row, {k: v.strip() for k, v in record.cells.items()}
        problems: list[Problem] = []

        def bad(column: str, reason: str, error: str = "invalid_value") -> None:
            problems.append(problem(error, reason, row=row, column=column, value=cells[column]))

        order_id = cells["order_id"]
        if not order_id:
            bad("order_id", "is required", "missing_value")
        elif len(order_id) > ORDER_ID_LENGTH:
            bad("order_id", f"is longer than {ORDER_ID_LENGTH} characters")
        status = cells.get("status", "").casefold()
        if order_id and not cells["sku"] and not cells["quantity"] and self.profile.continuations:
            # Amazon splits an order's data that does not fit one row (several promotions)
            # over more rows, leaving most of their columns blank: no line of its own.
            return _Line(row, order_id, None, True, "", 0, None, status, continuation=True)
        if self._skipped(status):
            if problems:
                return problems
            # Skipped whole; its other cells (often empty, e.g. a pending order's price)
            # need not be valid.
            return _Line(row, order_id, None, True, cells["sku"], 0, None, status)
        sold_at, offset_given = None, True
        found = _instant(cells["sold_at"], self.zone) if cells["sold_at"] else None
        if found is None:
            bad("sold_at", "must be a date and time such as 2026-03-01T14:05:00+01:00")
        else:
            sold_at, offset_given = found
            if sold_at < EARLIEST_SALE or sold_at > utcnow() + FUTURE_TOLERANCE:
                bad("sold_at", "must lie between 1980 and now")
        if not cells["sku"]:
            bad("sku", "is required", "missing_value")
        quantity = 0
        text = cells["quantity"]
        if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_QUANTITY:
            bad("quantity", f"must be a whole number from 1 to {MAX_QUANTITY:,}")
        else:
            quantity = int(text)
        unit_price = (
            None  # a cancelled order may come without its price
            if not cells["price"] and status in self.profile.cancelled_statuses
            else self._unit_price(cells["price"], quantity, bad)
        )
        if problems:
            return problems
        return _Line(
            row, order_id, sold_at, offset_given, cells["sku"], quantity, unit_price, status
        )

    def _unit_price(self, text: str, quantity: int, bad: Any) -> Decimal | None:
        if text.startswith("-"):
            bad("price", "must not be negative")
            return None
        if not re.fullmatch(MONEY_PATTERN, text):
            bad("price", "must be an amount like 19.90: digits, at most 2 after the point")
            return None
        amount = Decimal(text)
        if self.profile.price == "unit" or quantity == 0:
            return amount
        unit = (amount / quantity).quantize(Decimal("0.01"))
        if unit * quantity != amount:
            bad("price", f"is the total of {quantity} units but not a whole number of cents each")
            return None
        return unit

    def settle(self, rows: list[_Line], *, write: bool) -> None:
        lines = self.held + [row for row in rows if not row.continuation]
        orders: list[list[_Line]] = []
        for line in lines:
            if orders and orders[-1][0].order_id == line.order_id:
                orders[-1].append(line)
            else:
                orders.append([line])
        self.held = orders.pop() if orders else []
        self._settle(orders, write=write)

    def finish(self, *, write: bool) -> None:
        held, self.held = self.held, []
        self._settle([held] if held else [], write=write)

    def _settle(self, orders: list[list[_Line]], *, write: bool) -> None:
        fresh: list[list[_Line]] = []
        orders = self.tally.without_repeats(
            orders,
            lambda order: (order[0].order_id.casefold(), order[0].row),
            lambda order, first: problem(
                "duplicate_key",
                f"order {order[0].order_id!r} began at row {first}; the lines of an order "
                "must be consecutive rows",
                row=order[0].row,
                column="order_id",
                value=order[0].order_id,
            ),
        )
        for order in orders:
            if self._skipped(order[0].status):
                self.tally.skipped += 1
            else:
                fresh.append(order)
        if not fresh:
            return
        imported = repository.imported_order_ids(
            self.session, self.channel.id, {o[0].order_id for o in fresh}
        )
        products = repository.products_by_skus(
            self.session, {line.sku for order in fresh for line in order}
        )
        planned: list[_Planned] = []
        for order in fresh:
            if order[0].order_id.casefold() in imported:
                self.tally.unchanged += 1
                continue
            plan = self._sale(order, products)
            if plan is not None:
                planned.append(plan)
        if write and self.stock is not None:
            for plan in planned:
                if plan.cancelled is None:
                    self._take_and_record(plan, self.stock)
            # Cancelled orders take no stock: written as history below.
            planned = [plan for plan in planned if plan.cancelled is not None]
        for plan in planned:
            shown = {"total": {"before": None, "after": str(plan.sale["total"])}}
            if plan.cancelled is not None:
                shown["status"] = {"before": None, "after": plan.cancelled[0].status.value}
            self.tally.change(plan.order[0].row, "create", plan.order[0].order_id, shown)
        if write and (self.tally.ok or self.stock is not None) and planned:
            self._write(planned)

    def _write(self, planned: list[_Planned]) -> None:
        """Sales that took no stock and their events, in a few statements; the few cancelled
        ones one by one, as objects, with their cancellations."""
        sales_repository.insert_imported_sales(
            self.session,
            self.channel.id,
            [(plan.sale, plan.lines) for plan in planned if plan.cancelled is None],
        )
        announced: list[dict[str, Any]] = []
        for plan in planned:
            if plan.cancelled is None:
                announced.append(events.sale_recorded_of_rows(plan.sale, plan.lines))
                continue
            sale, cancellation = plan.cancelled
            sales_repository.add_sale(self.session, sale, stock_key=None)
            cancellation.sale_id = sale.id
            for refund_line, line in zip(cancellation.lines, sale.lines, strict=True):
                refund_line.sale_line_id = line.id
            self.session.add(cancellation)
            self.session.flush()
            announced += events.sale_recorded_as_cancelled(sale, cancellation)
        # Written while the import reads its next batch (common.db.execute_rows).
        outbox.append(self.session, outbox.SALES_OUTBOX, announced, answer_later=True)

    def _skipped(self, status: str) -> bool:
        return status in self.profile.pending_statuses or (
            status in self.profile.cancelled_statuses and self.options.cancelled == "skip"
        )

    def _take_and_record(self, plan: _Planned, stock: "TakeStock") -> None:
        """An order that takes stock: one call to products_service, then its own commit,
        as a sale through the API (its lines' snapshots and allocations as taken)."""
        first = plan.order[0]
        data = SaleCreate.model_validate(
            {
                "channel_id": self.channel.id,
                "sold_at": plan.sale["sold_at"],
                "note": plan.sale["note"],
                "lines": [
                    {
                        "product_id": line["product_id"],
                        "quantity": line["quantity"],
                        "unit_price": line["unit_price"],
                    }
                    for line in plan.lines
                ],
            }
        )
        try:
            recorded = take_and_record(
                session=self.session,
                data=data,
                channel=self.channel,
                key=None,
                digest="",
                actor_id=self.options.actor_id,
                request_id=stock.request_id,
                products_client=stock.products_client,
                external_order_id=first.order_id,
            )
        except AppError as exc:
            self.tally.reject(
                [
                    problem(
                        exc.code,
                        f"order {first.order_id!r} was not recorded: {exc.detail}",
                        row=first.row,
                        column="order_id",
                        value=first.order_id,
                    )
                ]
            )
            return
        self.tally.change(
            first.row,
            "create",
            first.order_id,
            {"total": {"before": None, "after": str(recorded.sale.total)}},
        )

    def _sale(self, order: list[_Line], products: Mapping[str, Any]) -> _Planned | None:
        """The order checked and priced as a sale from the catalog's snapshots (an order that
        takes stock is priced again from what products_service answers)."""
        first = order[0]
        unknown = [line for line in order if line.sku.casefold() not in products]
        if unknown:
            self.tally.reject(
                [
                    problem(
                        "unknown_sku",
                        "no product has this SKU; import the catalog first",
                        row=line.row,
                        column="sku",
                        value=line.sku,
                    )
                    for line in unknown
                ]
            )
            return None
        if len(order) > MAX_SALE_LINES:
            self.tally.reject(
                [
                    problem(
                        "invalid_value",
                        f"order {first.order_id!r} has {len(order)} lines; a sale holds at "
                        f"most {MAX_SALE_LINES}",
                        row=first.row,
                        column="order_id",
                        value=first.order_id,
                    )
                ]
            )
            return None
        if not first.offset_given and not self.zone_noted:
            self.zone_noted = True
            self.tally.notes.append(
                f"Dates without an offset were read as times in {self.zone.key} (the "
                "timezone parameter)"
            )
        assert first.sold_at is not None  # a line that is not skipped has its date
        sold_at = first.sold_at.astimezone(UTC)
        lines = [
            line_row(
                number,
                sold_at,
                products[line.sku.casefold()],
                line.quantity,
                line.unit_price if line.unit_price is not None else ZERO,
                [],  # history: no stock was taken
            )
            for number, line in enumerate(order, start=1)
        ]
        sale = sale_row(
            lines,
            channel_id=self.channel.id,
            sold_at=sold_at,
            note=self.note,
            key=None,
            digest="",
            actor_id=self.options.actor_id,
        )
        sale["external_order_id"] = first.order_id
        try:
            check_totals((line["line_total"] for line in lines), sale["total"], sale["cost_total"])
        except Unprocessable as exc:
            self.tally.reject([problem("invalid_value", exc.detail, row=first.row, column="price")])
            return None
        cancelled = None
        if first.status in self.profile.cancelled_statuses:
            if any(line.unit_price is None for line in order) and not self.zero_noted:
                self.zero_noted = True
                self.tally.notes.append(
                    "Cancelled orders without a price were recorded at 0.00 a unit"
                )
            recorded = sale_of_rows(sale, lines)
            cancellation = cancellation_of_import(
                recorded,
                reason=f"cancelled on {self.channel.code}",
                actor_id=self.options.actor_id,
            )
            cancelled = (recorded, cancellation)
        return _Planned(order, sale, lines, cancelled)


def import_orders(
    *,
    session: Session,
    binary: IO[bytes],
    options: OrderImportOptions,
    take_stock: TakeStock | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Record each order of the file as a sale of the channel (see the module docstring);
    the caller commits the session when it returns.

    ``take_stock``: the orders take their stock (today's orders, after the stock count):
    after a clean check of the whole file each order is recorded as a sale through the API
    is (one call to products_service, its own commit), so an order short of stock is
    reported and the others land (the report is then ``partial``)."""
    profile = PROFILES[options.profile]
    code = options.channel_code or profile.channel_code
    if code is None:
        raise Unprocessable(
            "Name the channel the orders go to (channel=...)", field="query.channel"
        )
    channel = sales_repository.channel_row(session, code=code)
    if channel is None or not channel.is_active:
        state = "is inactive" if channel is not None else "does not exist"
        raise Unprocessable(
            f"Sales channel {code!r} {state}; create or reactivate it first",
            field="query.channel",
        )
    zone = ZoneInfo(options.timezone)
    file = ImportFile(
        options.file_name,
        options.encoding,
        options.table_format or profile.table_format,
        options.dry_run,
    )
    return run_import(
        binary,
        session=session,
        kind="orders",
        factory=lambda tally: _OrderImporter(session, tally, options, channel, zone, take_stock),
        file=file,
        one_by_one=take_stock is not None,
        progress=progress,
    )
