"""Sums per (bucket, group) as numpy columns: what the rollups held in memory add up to
(sales_service/reports/inmemory.py), added to, ranked and cut there, and turned into
``Measures`` only for the groups an answer shows. Money in whole cents (int64): exact."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from sales_service.reports.rollups import CENT, Measures

GROUP_BITS = 32  # a column's key: bucket << 32 | group
_GROUP_MASK = (1 << GROUP_BITS) - 1
_DENSE_SPAN = 1 << 16  # keys within a span this wide are added up in place, not sorted
Key = tuple[int | None, int | None]  # (bucket index, group), as in repository.Sums


def _money(cents: int) -> Decimal:
    return Decimal(cents) * CENT  # exact (far inside the context's 28 digits), as scaleb(-2)


def cents(amount: Decimal) -> int:
    # every figure has two decimals (exact); SQLite's sums come through floats: rounded
    return int(amount.scaleb(2).to_integral_value(ROUND_HALF_EVEN))


@dataclass(frozen=True)
class ColumnSums:
    """Orders, units, revenue and cost (cents) per key, keys ascending and distinct."""

    keys: np.ndarray  # int64: bucket << 32 | group, 0 for what there is none of
    totals: np.ndarray  # int64, shape (4, len(keys))
    bucketed: bool
    grouped: bool

    @classmethod
    def reduce(
        cls, keys: np.ndarray, totals: np.ndarray, *, bucketed: bool, grouped: bool
    ) -> "ColumnSums":
        """Columns with equal keys added up."""
        if len(keys) == 0:
            return cls(keys, totals, bucketed, grouped)
        buckets, groups = keys >> GROUP_BITS, keys & _GROUP_MASK
        first_bucket, width = int(buckets.min()), int(groups.max()) + 1
        span = (int(buckets.max()) - first_bucket + 1) * width
        if span <= max(4 * len(keys), _DENSE_SPAN):
            # few possible keys (a thousand products, a series' buckets): added up at their
            # place in an array of every one, ten times quicker than sorting the keys
            place = (buckets - first_bucket) * width + groups
            found = np.flatnonzero(np.bincount(place, minlength=span))
            summed = np.zeros((4, span), dtype=np.int64)
            for row in range(len(totals)):
                if totals[row].any():  # units only: one row (any along axis 1: 6x slower)
                    np.add.at(summed[row], place, totals[row])
            found_keys = ((found // width + first_bucket) << GROUP_BITS) | (found % width)
            return cls(found_keys, np.take(summed, found, axis=1), bucketed, grouped)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        firsts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        summed = np.add.reduceat(np.take(totals, order, axis=1), firsts, axis=1)
        return cls(keys[firsts], summed, bucketed, grouped)

    @classmethod
    def empty(cls, *, bucketed: bool, grouped: bool) -> "ColumnSums":
        return cls(np.zeros(0, dtype=np.int64), np.zeros((4, 0), dtype=np.int64), bucketed, grouped)

    @classmethod
    def combine(cls, parts: Sequence["ColumnSums"]) -> "ColumnSums":
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return cls.reduce(
            np.concatenate([p.keys for p in parts]),
            np.concatenate([p.totals for p in parts], axis=1),
            bucketed=first.bucketed,
            grouped=first.grouped,
        )

    def plus(self, sums: Mapping[Key, Measures]) -> "ColumnSums":
        """These columns and the sums (from SQL) added up."""
        if not sums:
            return self
        keys = np.array(
            [((b or 0) << GROUP_BITS) | (g or 0) for b, g in sums], dtype=np.int64
        ).reshape(-1)
        totals = np.array(
            [[m.orders, m.units, cents(m.revenue), cents(m.cost)] for m in sums.values()],
            dtype=np.int64,
        ).T
        return ColumnSums.combine([self, ColumnSums(keys, totals, self.bucketed, self.grouped)])

    def groups(self) -> np.ndarray:
        return self.keys & _GROUP_MASK

    def zero_groups(self) -> list[int]:
        """The groups whose four sums are all zero."""
        if not self.grouped:
            return []
        zero = ~self.totals.any(axis=0)
        return sorted(set(self.groups()[zero].tolist()))

    def without(self, groups: Iterable[int]) -> "ColumnSums":
        keep = ~np.isin(self.groups(), list(groups))
        kept = np.compress(keep, self.totals, axis=1)
        return ColumnSums(self.keys[keep], kept, self.bucketed, self.grouped)

    def top(self, figure: str, descending: bool, limit: int) -> "ColumnSums":
        """The first ``limit`` columns by the figure, ties by group id (as the database
        ranks them)."""
        _, units, revenue, cost = self.totals
        value = {"units": units, "margin": revenue - cost}.get(figure, revenue)
        order = np.lexsort((self.groups(), -value if descending else value))[:limit]
        ranked = np.take(self.totals, order, axis=1)
        return ColumnSums(self.keys[order], ranked, self.bucketed, self.grouped)

    def per_bucket(self, count: int) -> tuple[list[int], list[int], list[int], list[int]]:
        """Orders, units, revenue and cost (cents) of each of ``count`` buckets, all groups
        together."""
        found = np.zeros((count, 4), dtype=np.int64)
        buckets = self.keys >> GROUP_BITS
        if len(buckets) and not (buckets.min() >= 0 and buckets.max() < count):
            raise ValueError(f"sums for buckets outside 0..{count - 1}")  # a planning error
        np.add.at(found, buckets, self.totals.T)
        orders, units, revenue, cost = found.T.tolist()
        return orders, units, revenue, cost

    def to_sums(self) -> dict[Key, Measures]:
        found: dict[Key, Measures] = {}
        columns = zip(self.keys.tolist(), self.totals.T.tolist(), strict=True)
        for key, (orders, units, revenue, cost) in columns:
            bucket = key >> GROUP_BITS if self.bucketed else None
            group = key & _GROUP_MASK if self.grouped else None
            found[(bucket, group)] = Measures(orders, units, _money(revenue), _money(cost))
        return found
