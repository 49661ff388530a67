"""The shop simulated in memory, in time order, producing the rows a live shop would have.

Every sale is written the way sales_service writes one (price, cost and category snapshots,
exact totals, ``S-%08d`` numbers, ``stock_sync=done``) and takes its stock the way
products_service commits a reservation: from the warehouse with the most available first,
one ``sale`` movement per allocation, each carrying the level it left. Purchase orders
arrive after the supplier's lead time whenever stock falls to its reorder point, so no sale
drives a level below zero; refunds and cancellations come back later as ``return``
movements into the warehouse the units left from. Rows go to a ``RowSink`` as they are
made, with ids assigned here so children can name their parents without a round trip.
"""

import heapq
import json
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from demo.catalog import Catalog
from demo.timeline import US_PER_DAY, from_us, plan_days, sale_times, to_us

US_PER_HOUR = US_PER_DAY // 24
US_PER_MINUTE = US_PER_HOUR // 60

LINES_PER_SALE = (0.55, 0.27, 0.12, 0.06)  # 1, 2, 3 or 4 lines
CANCEL_RATE = 0.01
REFUND_RATE = 0.03
FULL_REFUND_SHARE = 0.45
# Orders cover this many days of demand; the reorder point covers the lead time with margin.
ORDER_COVER_DAYS = 30
SAFETY = 1.4
FORECAST_DAYS = 14
# Products flagged to end short stop being delivered this long before the end.
SHORTAGE_DAYS = 42
# Retail stores open 9:00-21:00 local time; online channels sell around the clock.
RETAIL_HOURS = range(9, 21)

REFUND_REASONS = (
    "arrived damaged",
    "wrong size or colour",
    "customer changed their mind",
    "not as described",
    "arrived too late",
    "duplicate order",
)
CANCEL_REASONS = ("customer cancelled", "payment declined", "address could not be verified")

Row = tuple[Any, ...]


class RowSink(Protocol):
    """Where rows go; ``money`` turns cents into the driver's value for a DECIMAL column."""

    sales: list[Row]
    sale_lines: list[Row]
    sale_refunds: list[Row]
    sale_refund_lines: list[Row]
    stock_movements: list[Row]
    money: Callable[[int], object]

    def maybe_flush(self) -> None: ...


@dataclass(frozen=True)
class ShopRefs:
    """Database ids the simulation needs, parallel to the catalog's lists."""

    product_ids: list[int]
    category_ids: dict[str, int]  # slug -> id
    warehouse_ids: list[int]  # ascending
    warehouse_shares: list[float]  # how a delivery is split across them
    warehouse_codes: list[str]  # what names them
    channel_ids: dict[str, int]  # code -> id
    actor_id: int


@dataclass
class NextIds:
    """The next free id of each table written in bulk."""

    sale: int = 1
    sale_line: int = 1
    refund: int = 1
    refund_line: int = 1
    movement: int = 1


@dataclass(frozen=True)
class Plan:
    size: int
    seed: int
    months: int
    end: datetime
    timezone: ZoneInfo


@dataclass
class Outcome:
    """What the simulation produced, for the summary and the level rows."""

    sales: int = 0
    sale_lines: int = 0
    refunds: int = 0
    cancellations: int = 0
    movements: int = 0
    receipts: int = 0
    revenue_cents: int = 0
    refunded_cents: int = 0
    first_sale: datetime | None = None
    last_sale: datetime | None = None
    # (product_id, warehouse_id) -> (on_hand, microseconds of its last movement)
    levels: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    thresholds: list[int] = field(default_factory=list)  # per catalog product


# Channel mix: (code, share). Retail only sells in opening hours.
CHANNEL_MIX = (("amazon", 0.38), ("web-store", 0.30), ("walmart", 0.17), ("retail", 0.15))


class TimestampText:
    """Microseconds since the epoch -> 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), the stored form."""

    def __init__(self) -> None:
        self._dates: dict[int, str] = {}
        self._last = (-1, "")

    def __call__(self, us: int) -> str:
        if us == self._last[0]:  # a sale's movements share its moment
            return self._last[1]
        day, rem = divmod(us, US_PER_DAY)
        text = self._dates.get(day)
        if text is None:
            text = self._dates[day] = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
        seconds, micro = divmod(rem, 1_000_000)
        hours, seconds = divmod(seconds, 3600)
        minutes, seconds = divmod(seconds, 60)
        stamp = f"{text} {hours:02d}:{minutes:02d}:{seconds:02d}.{micro:06d}"
        self._last = (us, stamp)
        return stamp


class MoneyValues(dict[int, object]):
    """Cents -> the driver's DECIMAL value, converted once per distinct amount."""

    def __init__(self, convert: Callable[[int], object]) -> None:
        super().__init__()
        self.convert = convert

    def __missing__(self, cents: int) -> object:
        value = self[cents] = self.convert(cents)
        return value


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


def simulate(plan: Plan, catalog: Catalog, refs: ShopRefs, ids: NextIds, sink: RowSink) -> Outcome:
    """Run the shop from the start of the period to ``plan.end``, writing rows to ``sink``."""
    rng = random.Random(f"demo-sales:{plan.seed}")  # noqa: S311 - seeded so a seed repeats
    random_ = rng.random
    randint = rng.randint
    money = MoneyValues(sink.money)
    stamp = TimestampText()
    products = catalog.products
    n_products = len(products)
    n_warehouses = len(refs.warehouse_ids)
    wids, codes = refs.warehouse_ids, refs.warehouse_codes
    actor = refs.actor_id
    end_us = to_us(plan.end)

    days = plan_days(
        size=plan.size, months=plan.months, end=plan.end, timezone=plan.timezone, rng=rng
    )
    start_us = days[0].start_us if days else end_us
    period = max(1, end_us - start_us)
    cutoff_us = max(start_us + period * 2 // 3, end_us - SHORTAGE_DAYS * US_PER_DAY)

    # --- per-product constants -----------------------------------------------------------
    pid = refs.product_ids
    sku = [p.sku for p in products]
    name = [p.name for p in products]
    cat = [refs.category_ids[p.category_slug] for p in products]
    category_name = {c.slug: c.name for c in catalog.categories}
    cat_name = [category_name[p.category_slug] for p in products]
    price_new = [p.price_cents for p in products]
    cost_new = [p.cost_cents for p in products]
    price_old = [p.old_price_cents for p in products]
    cost_old = [p.old_cost_cents for p in products]
    change_us = [
        start_us + int(period * p.price_change_at) if p.price_change_at is not None else 0
        for p in products
    ]
    qty_cum = [_cumulative(p.quantity_weights) for p in products]
    qty_mean = [
        sum((n + 1) * w for n, w in enumerate(p.quantity_weights)) / sum(p.quantity_weights)
        for p in products
    ]
    ends_short = [p.ending != "normal" for p in products]
    lead_us = [p.lead_days * US_PER_DAY for p in products]

    # Product mix by calendar month: popularity times the category's season.
    tops = {c.slug: c for c in catalog.categories}
    mix_share: list[list[float]] = []
    mix_cum: list[list[float]] = []
    for month in range(12):
        weights = [p.popularity * tops[p.top_slug].season[month] for p in products]
        total_weight = sum(weights)
        mix_share.append([w / total_weight for w in weights])
        mix_cum.append(_cumulative(weights))
    line_counts = (1, 2, 3, 4)
    line_cum = _cumulative(LINES_PER_SALE)
    lines_mean = sum(n * w for n, w in zip(line_counts, LINES_PER_SALE, strict=True))

    channel_share = dict(CHANNEL_MIX)
    open_codes = [code for code in channel_share if code in refs.channel_ids]
    night_codes = [code for code in open_codes if code != "retail"] or open_codes
    channel_all = [refs.channel_ids[c] for c in open_codes]
    channel_all_cum = _cumulative([channel_share[c] for c in open_codes])
    channel_night = [refs.channel_ids[c] for c in night_codes]
    channel_night_cum = _cumulative([channel_share[c] for c in night_codes])
    day_mix, night_mix = channel_all_cum[-1], channel_night_cum[-1]

    # Demand forecast: sales per day over the next two weeks, from the planned counts.
    daily = [d.count / max(d.covered_seconds / 86_400, 1e-9) for d in days]
    forecast = [
        max(daily[i : i + FORECAST_DAYS]) if daily[i : i + FORECAST_DAYS] else 0.0
        for i in range(len(days))
    ]
    average_daily = plan.size / max(1.0, period / US_PER_DAY)
    thresholds = [
        max(5, min(10_000, round(average_daily * lines_mean * share * qty_mean[i] * 7)))
        for i, share in enumerate(
            [sum(mix_share[m][i] for m in range(12)) / 12 for i in range(n_products)]
        )
    ]
    reorder_point = [0] * n_products
    order_qty = [0] * n_products

    def refresh_reorder(day_index: int, month: int) -> None:
        expected_sales = forecast[day_index] if forecast else 0.0
        for i in range(n_products):
            rate = expected_sales * lines_mean * mix_share[month][i] * qty_mean[i]
            pack = products[i].pack_size
            cover = rate * (products[i].lead_days + 2) * SAFETY
            reorder_point[i] = thresholds[i] + math.ceil(cover)
            order_qty[i] = max(pack, math.ceil(rate * ORDER_COVER_DAYS / pack) * pack)

    # --- stock state ---------------------------------------------------------------------
    level = [[0] * n_warehouses for _ in range(n_products)]
    touched = [[0] * n_warehouses for _ in range(n_products)]
    on_hand_total = [0] * n_products
    on_order = [0] * n_products
    events: list[tuple[int, int, int, Any]] = []  # (when, seq, kind, payload)
    seq = 0
    RECEIPT, RETURN = 0, 1
    movements = sink.stock_movements
    out = Outcome(thresholds=thresholds)
    po_number = 0

    next_movement = ids.movement

    def move(i: int, k: int, qty: int, kind: str, reason: str, ref: str | None, us: int) -> None:
        nonlocal next_movement
        after = level[i][k] + qty
        level[i][k] = after
        on_hand_total[i] += qty
        touched[i][k] = us
        movements.append(
            (next_movement, pid[i], wids[k], kind, qty, after, reason, ref, actor, stamp(us))
        )
        next_movement += 1

    def split(qty: int) -> list[tuple[int, int]]:
        parts = [int(qty * share) for share in refs.warehouse_shares]
        parts[0] += qty - sum(parts)
        return [(k, q) for k, q in enumerate(parts) if q > 0]

    def receive(i: int, parts: list[tuple[int, int]], us: int, reason: str) -> None:
        nonlocal po_number
        po_number += 1
        ref = f"PO-{po_number:06d}"
        for k, q in parts:
            move(i, k, q, "receipt", reason, ref, us)
        out.receipts += 1

    def order(i: int, now: int) -> None:
        nonlocal seq
        qty = order_qty[i]
        on_order[i] += qty
        arrives = now + lead_us[i] + randint(-12, 12) * US_PER_HOUR
        seq += 1
        heapq.heappush(events, (max(arrives, now + US_PER_HOUR), seq, RECEIPT, (i, qty)))

    def handle(event: tuple[int, int, int, Any]) -> None:
        when, _, kind, payload = event
        if kind == RECEIPT:
            i, qty = payload
            on_order[i] -= qty
            receive(i, split(qty), when, "supplier delivery")
        else:
            i, k, qty, reason, ref = payload
            move(i, k, qty, "return", reason, ref, when)

    # --- opening stock -------------------------------------------------------------------
    if days:
        refresh_reorder(0, days[0].local_date.month - 1)
    opening_us = start_us - US_PER_DAY
    for i in range(n_products):
        receive(i, split(reorder_point[i] + order_qty[i]), opening_us, "opening stock")

    sales_rows = sink.sales
    line_rows = sink.sale_lines
    refund_rows = sink.sale_refunds
    refund_line_rows = sink.sale_refund_lines
    next_sale, next_line = ids.sale, ids.sale_line
    next_refund, next_refund_line = ids.refund, ids.refund_line
    line_reasons = [f"sale line {n}" for n in range(1, 9)]
    revenue = 0
    refunded = 0
    first_us = last_us = 0

    for day_index, day in enumerate(days):
        month = day.local_date.month - 1
        refresh_reorder(day_index, month)
        cum = mix_cum[month]
        for t, hour in sale_times(day, rng):
            while events and events[0][0] <= t:
                handle(heapq.heappop(events))
            late = t >= cutoff_us

            # Which products: 1-4 distinct lines, drawn by this month's product mix.
            n_lines = line_counts[min(3, bisect_right(line_cum, random_() * line_cum[-1]))]
            top = cum[-1]
            picks = [bisect_right(cum, random_() * top) for _ in range(n_lines)]
            if n_lines > 1:
                picks = list(dict.fromkeys(picks))
            if late:
                # Sold-out products the supplier no longer delivers: the customer picks another.
                picks = [i for i in picks if not ends_short[i] or on_hand_total[i]]
                while not picks:
                    pick = bisect_right(cum, random_() * top)
                    if not ends_short[pick] or on_hand_total[pick]:
                        picks = [pick]

            sale_id = next_sale
            number = f"S-{sale_id:08d}"
            when = stamp(t)
            lines: list[list[Any]] = []  # [line_id, i, qty, price, cost, allocations]
            units = total = cost_total = 0
            for i in picks:
                r = random_()
                qty = 1
                for c in qty_cum[i]:
                    if r < c:
                        break
                    qty += 1
                if late and ends_short[i]:
                    qty = min(qty, on_hand_total[i])  # no more deliveries: what is left
                elif on_hand_total[i] < qty:
                    # Demand outran the forecast: an expedited delivery lands first.
                    receive(i, [(0, order_qty[i] + qty)], t, "expedited delivery")
                if t < change_us[i]:
                    price, cost = price_old[i], cost_old[i]
                else:
                    price, cost = price_new[i], cost_new[i]

                # Allocate as products_service does: most available first, ties by id.
                stock = level[i]
                line_no = len(lines) + 1
                best = max(range(n_warehouses), key=stock.__getitem__)
                if stock[best] >= qty:
                    allocation = [(best, qty)]
                else:
                    allocation = []
                    needed = qty
                    for k in sorted(range(n_warehouses), key=lambda k: -stock[k]):
                        take = min(stock[k], needed)
                        if take == 0:
                            break
                        allocation.append((k, take))
                        needed -= take
                    allocation.sort()
                reason = line_reasons[line_no - 1]
                for k, q in allocation:
                    move(i, k, -q, "sale", reason, number, t)
                reorder = on_hand_total[i] + on_order[i] <= reorder_point[i]
                if reorder and not (late and ends_short[i]):
                    order(i, t)
                lines.append([next_line, i, qty, price, cost, allocation])
                next_line += 1
                units += qty
                total += price * qty
                cost_total += cost * qty

            # Refund or cancellation, decided now; its stock comes back when it happens.
            r = random_()
            refund_at = 0
            kind = "refund"
            if r < CANCEL_RATE:
                kind = "cancellation"
                refund_at = t + randint(10, 480) * US_PER_MINUTE
            elif r < CANCEL_RATE + REFUND_RATE:
                refund_at = t + randint(1 * 24, 30 * 24) * US_PER_HOUR
            refund_lines: list[tuple[int, int]] = []  # (index into lines, qty)
            if 0 < refund_at < end_us:
                if kind == "cancellation" or random_() < FULL_REFUND_SHARE:
                    refund_lines = [(n, line[2]) for n, line in enumerate(lines)]
                else:
                    chosen = [n for n in range(len(lines)) if random_() < 0.6] or [0]
                    refund_lines = [(n, randint(1, lines[n][2])) for n in chosen]

            status = "completed"
            r_units = r_total = r_cost = 0
            updated = when
            refunded_qty = [0] * len(lines)
            if refund_lines:
                refund_id = next_refund
                next_refund += 1
                refund_when = stamp(refund_at)
                updated = refund_when
                reason = rng.choice(CANCEL_REASONS if kind == "cancellation" else REFUND_REASONS)
                move_reason = f"{kind} #{refund_id}"  # as sales_service's refunds word it
                for n, q in refund_lines:
                    line_id, i, _qty, price, cost, allocation = lines[n]
                    refunded_qty[n] = q
                    r_units += q
                    r_total += price * q
                    r_cost += cost * q
                    refund_line_rows.append(
                        (next_refund_line, refund_id, line_id, q, money[price * q], money[cost * q])
                    )
                    next_refund_line += 1
                    left = q
                    for k, taken in allocation:
                        back = min(taken, left)
                        seq += 1
                        heapq.heappush(
                            events, (refund_at, seq, RETURN, (i, k, back, move_reason, number))
                        )
                        left -= back
                        if not left:
                            break
                refund_rows.append(
                    (refund_id, sale_id, kind, r_units, money[r_total], reason,
                     None, "", "done", actor, refund_when)
                )  # fmt: skip
                if kind == "cancellation":
                    status = "cancelled"
                    out.cancellations += 1
                else:
                    status = "refunded" if r_units == units else "partially_refunded"
                    out.refunds += 1

            if hour in RETAIL_HOURS:
                channel = channel_all[bisect_right(channel_all_cum, random_() * day_mix)]
            else:
                channel = channel_night[bisect_right(channel_night_cum, random_() * night_mix)]
            sales_rows.append(
                (sale_id, number, channel, status, when, units, money[total],
                 money[cost_total], r_units, money[r_total], money[r_cost], "", None, "",
                 None, "done", actor, when, updated, None)
            )  # fmt: skip
            for n, (line_id, i, qty, price, cost, allocation) in enumerate(lines):
                rq = refunded_qty[n]
                taken = _allocations_json(wids, codes, allocation)
                line_rows.append(
                    (line_id, sale_id, n + 1, when, pid[i], sku[i], name[i], cat[i],
                     cat_name[i], qty, money[price], money[cost], money[price * qty],
                     money[cost * qty], rq, money[price * rq], money[cost * rq], taken)
                )  # fmt: skip
            next_sale += 1
            out.sales += 1
            out.sale_lines += len(lines)
            revenue += total
            refunded += r_total
            first_us = first_us or t
            last_us = t
            sink.maybe_flush()

    # Whatever happens before the end (deliveries, returns) still happens; later ones not.
    while events and events[0][0] < end_us:
        handle(heapq.heappop(events))

    # Products meant to end short: a stock count writes off whatever is above the target.
    count_ref = f"COUNT-{plan.end.astimezone(plan.timezone):%Y%m%d}"
    for i in range(n_products):
        if not ends_short[i]:
            continue
        target = 0 if products[i].ending == "out" else max(1, thresholds[i] // 3)
        keep = target
        for k in range(n_warehouses):
            kept = min(level[i][k], keep)
            keep -= kept
            if level[i][k] > kept:
                move(
                    i, k, kept - level[i][k], "count_correction",
                    "cycle count: units missing or damaged", count_ref, end_us,
                )  # fmt: skip

    out.first_sale = from_us(first_us) if first_us else None
    out.last_sale = from_us(last_us) if last_us else None
    out.movements = next_movement - ids.movement
    out.revenue_cents = revenue
    out.refunded_cents = refunded
    out.levels = {
        (pid[i], wids[k]): (level[i][k], touched[i][k])
        for i in range(n_products)
        for k in range(n_warehouses)
        if touched[i][k]
    }
    ids.sale, ids.sale_line, ids.refund = next_sale, next_line, next_refund
    ids.refund_line, ids.movement = next_refund_line, next_movement
    return out


def _allocations_json(wids: list[int], codes: list[str], allocation: list[tuple[int, int]]) -> str:
    """The sale line's allocations as the JSON column stores them (as a take answers them)."""
    return json.dumps(
        [
            {"warehouse_id": wids[k], "warehouse_code": codes[k], "quantity": q}
            for k, q in allocation
        ]
    )
