"""Sums per bucket from columns: every group of a bucket added up, empty buckets zero, and a
bucket outside the series an error rather than a sum counted in another bucket (numpy would
take bucket -1 as the last one)."""

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from sales_service.reports.columns import GROUP_BITS, ColumnSums
from sales_service.reports.repository import PerProduct, _side_by_side
from sales_service.reports.service import cents_figures


def columns(*rows: tuple[int, int, int, int, int, int]) -> ColumnSums:
    """(bucket, group, orders, units, revenue cents, cost cents) rows, reduced."""
    keys = np.array([(b << GROUP_BITS) | g for b, g, *_ in rows], dtype=np.int64)
    totals = np.array([r[2:] for r in rows], dtype=np.int64).T.reshape(4, len(rows))
    return ColumnSums.reduce(keys, totals, bucketed=True, grouped=True)


def test_each_bucket_adds_up_its_groups_and_empty_buckets_are_zero() -> None:
    found = columns((0, 7, 1, 2, 1050, 400), (2, 7, 1, 1, 99, 10), (2, 9, 2, -1, -500, -200))
    assert found.per_bucket(4) == (
        [1, 0, 3, 0],
        [2, 0, 0, 0],
        [1050, 0, -401, 0],
        [400, 0, -190, 0],
    )


@pytest.mark.parametrize("bucket", [-1, 3])
def test_a_bucket_outside_the_series_is_an_error(bucket: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        columns((bucket, 1, 1, 1, 100, 50), (0, 1, 1, 1, 100, 50)).per_bucket(3)


@pytest.mark.parametrize("spread", [10, 1 << 20, 1 << 31])
@pytest.mark.parametrize("zero_rows", [(), (0, 2, 3)])
def test_equal_keys_are_added_up_however_far_apart_the_keys_lie(
    spread: int, zero_rows: tuple[int, ...]
) -> None:
    """Keys within a narrow span are added up in place, others by sorting: the same sums,
    every key given listed once (those that add up to zero too), ascending; with some
    figures all zero (units alone, as a stock cover ranking sums them) too."""
    rng = np.random.default_rng(spread)
    buckets = rng.integers(-1, 5, 300)
    groups = rng.integers(0, spread, 300) // 7 * 7  # some keys repeat
    keys = (buckets << GROUP_BITS) | groups
    totals = rng.integers(-(10**9), 10**9, (4, 300))
    totals[:, :2] = [[5, -5]] * 4  # the same key twice, netting to zero
    totals[list(zero_rows)] = 0
    keys[1] = keys[0]
    expected: dict[int, list[int]] = {}
    for key, column in zip(keys.tolist(), totals.T.tolist(), strict=True):
        expected[key] = [a + b for a, b in zip(expected.get(key, [0] * 4), column, strict=True)]
    found = ColumnSums.reduce(keys, totals, bucketed=True, grouped=True)
    assert found.keys.tolist() == sorted(expected)
    assert found.totals.T.tolist() == [expected[key] for key in sorted(expected)]


def test_figures_from_cents_round_the_average_order_half_away_from_zero() -> None:
    for revenue in range(-400, 401):
        for orders in range(1, 9):
            made = cents_figures(orders, 1, revenue, 7)
            expected = (Decimal(revenue) / 100 / orders).quantize(Decimal("0.01"), ROUND_HALF_UP)
            assert made["average_order_value"] == expected, (revenue, orders)
            assert made["margin"] == Decimal(revenue - 7) / 100
    assert cents_figures(0, 0, 150, 0)["average_order_value"] is None


def test_money_from_cents_is_exact_and_written_with_two_decimals_at_any_size() -> None:
    """Exact to the cent and shown as such ("12.30", never "12.3" or "1.23E+3") from 0 to
    the largest sums a 64-bit column holds, either sign."""
    for amount in (0, 1, -1, 99, -100, 123_400, 10**15 + 7, 2**62, -(2**62)):
        made = cents_figures(3, 1, amount, -amount)
        assert made["revenue"] == Decimal(amount) / 100
        assert made["margin"] == Decimal(2 * amount) / 100
        for name in ("revenue", "cost", "margin", "average_order_value"):
            assert made[name].as_tuple().exponent == -2, (name, amount)
            assert f"{made[name]:f}" == str(made[name])


def test_a_number_per_product_looked_up_for_many_products_at_once() -> None:
    """Products not listed read 0, whether before, between or after those listed, or where
    none is (the insight's stock per product, and the units sold)."""
    listed = PerProduct(
        np.array([3, 7, 9], dtype=np.int64), np.array([30, -70, 90], dtype=np.int64)
    )
    asked = np.array([1, 3, 5, 7, 9, 12], dtype=np.int64)
    assert listed.at(asked).tolist() == [0, 30, 0, -70, 90, 0]
    nothing = PerProduct(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    assert nothing.at(asked).tolist() == [0] * 6


@pytest.mark.parametrize("highest", [40, 10**9])  # ids numbered closely, or far apart
def test_two_numbers_per_product_side_by_side_list_every_product_once(highest: int) -> None:
    """The insight ranks every product with stock or sales: each listed once, ascending,
    with its stock and its units (0 where one side does not list it)."""
    rng = np.random.default_rng(highest)
    for _ in range(200):
        sides = []
        for _side in range(2):
            ids = np.unique(rng.integers(1, highest, int(rng.integers(0, 30))))
            sides.append(PerProduct(ids.astype(np.int64), rng.integers(-5, 50, len(ids))))
        products, first, second = _side_by_side(*sides)
        expected: dict[int, list[int]] = {}
        for k, side in enumerate(sides):
            for p, v in zip(side.products.tolist(), side.values.tolist(), strict=True):
                expected.setdefault(p, [0, 0])[k] = v
        assert products.tolist() == sorted(expected)
        assert [[a, b] for a, b in zip(first.tolist(), second.tolist(), strict=True)] == [
            expected[p] for p in sorted(expected)
        ]
