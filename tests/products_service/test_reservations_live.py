"""Reservations under real concurrency: many threads over HTTP against a 2-worker server.

The server (``live_products``) sweeps expired reservations every 0.5 s in both workers.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Engine, func, select

from common.contracts import RESERVATIONS_PATH
from common.db import make_sessionmaker
from common.models import MovementType, Reservation
from tests.conftest import LiveServer, all_at_once
from tests.products_service.factories import (
    AvailabilityWatch,
    create_product,
    create_warehouse,
    ledger_problems,
    level,
    main_warehouse_id,
    movements,
    short_line,
)

pytestmark = pytest.mark.live

T = TypeVar("T")
WORKERS = 40


SOLD = {"sale_reference": "S-1"}


def body(*lines: dict[str, Any], key: str, **extra: Any) -> dict[str, Any]:
    return {"idempotency_key": key, "lines": list(lines), **extra}


def line(product_id: int, quantity: int, warehouse_id: int | None = None) -> dict[str, Any]:
    return {"product_id": product_id, "quantity": quantity, "warehouse_id": warehouse_id}


def reservation_count(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(Reservation)) or 0


@pytest.fixture
def http(live_products: LiveServer, service_headers: dict[str, str]) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=WORKERS + 10, max_keepalive_connections=WORKERS + 10)
    with httpx.Client(
        base_url=live_products.url, headers=service_headers, timeout=60, limits=limits
    ) as client:
        yield client


@pytest.fixture
def main(engine: Engine) -> int:
    return main_warehouse_id(engine)


def test_200_buyers_for_50_units_then_every_sale_commits(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    product = create_product(engine, stock={main: 50})

    def buy(i: int) -> Callable[[], httpx.Response]:
        return lambda: http.post(RESERVATIONS_PATH, json=body(line(product, 1), key=f"buyer-{i}"))

    with AvailabilityWatch(engine, product, main) as watch:
        responses = all_at_once([buy(i) for i in range(200)], workers=WORKERS)
    assert Counter(r.status_code for r in responses) == {201: 50, 409: 150}
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["lines"] == [
            short_line(engine, line_no=1, product_id=product, requested=1, available=0)
        ]
    assert level(engine, product, main) == (50, 50)
    assert watch.samples > 0
    assert watch.lowest is not None and watch.lowest >= 0
    assert ledger_problems(engine) == []

    ids = [r.json()["id"] for r in responses if r.status_code == 201]
    assert len(set(ids)) == 50

    def commit(reservation_id: int) -> Callable[[], httpx.Response]:
        return lambda: http.post(f"{RESERVATIONS_PATH}/{reservation_id}/commit", json=SOLD)

    commits = all_at_once([commit(i) for i in ids], workers=WORKERS)
    assert [c.status_code for c in commits] == [200] * 50
    assert {c.json()["status"] for c in commits} == {"committed"}
    assert level(engine, product, main) == (0, 0)
    sales = movements(engine, product, MovementType.SALE)
    assert len(sales) == 50
    assert sorted(m.on_hand_after for m in sales) == list(range(50))
    assert ledger_problems(engine) == []


def test_one_key_sent_ten_times_at_once_reserves_once(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 4, north: 6})
    payload = body(line(product, 8), key="sale-dup", reference="S-dup")
    responses = all_at_once(
        [lambda: http.post(RESERVATIONS_PATH, json=payload)] * 10, workers=WORKERS
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.text for r in responses}) == 1
    assert reservation_count(engine) == 1
    assert level(engine, product, main).reserved + level(engine, product, north).reserved == 8

    other = http.post(RESERVATIONS_PATH, json=body(line(product, 1), key="sale-dup"))
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert reservation_count(engine) == 1
    assert ledger_problems(engine) == []


def test_one_key_sent_ten_times_at_once_without_stock_is_refused_ten_times(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    product = create_product(engine, stock={main: 2})
    payload = body(line(product, 3), key="sale-short")
    responses = all_at_once(
        [lambda: http.post(RESERVATIONS_PATH, json=payload)] * 10, workers=WORKERS
    )
    assert [r.status_code for r in responses] == [409] * 10
    assert {r.json()["error"] for r in responses} == {"insufficient_stock"}
    assert reservation_count(engine) == 0
    assert level(engine, product, main) == (2, 0)


def test_one_key_sent_at_once_with_different_bodies_makes_one_reservation(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    products = [create_product(engine, stock={main: 5}) for _ in range(10)]

    def reserve_from(product: int) -> Callable[[], httpx.Response]:
        return lambda: http.post(RESERVATIONS_PATH, json=body(line(product, 1), key="shared"))

    responses = all_at_once([reserve_from(p) for p in products], workers=WORKERS)
    assert sorted(r.status_code for r in responses) == [201] + [422] * 9
    winner = next(r.json() for r in responses if r.status_code == 201)
    refused = [r.json() for r in responses if r.status_code == 422]
    assert {(r["error"], r["reservation_id"]) for r in refused} == {
        ("idempotency_key_reused", winner["id"])
    }
    assert reservation_count(engine) == 1
    assert sum(level(engine, p, main).reserved for p in products) == 1


def _wait_for_status(http: httpx.Client, reservation_id: int, wanted: str, within: float) -> str:
    deadline = time.monotonic() + within
    status = ""
    while time.monotonic() < deadline:
        status = http.get(f"{RESERVATIONS_PATH}/{reservation_id}").json()["status"]
        if status == wanted:
            break
        time.sleep(0.1)
    return status


def test_the_server_sweeps_an_expired_reservation_and_a_late_commit_still_sells(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    product = create_product(engine, stock={main: 10})
    made = http.post(RESERVATIONS_PATH, json=body(line(product, 4), key="slow", ttl_seconds=1))
    assert made.status_code == 201
    assert level(engine, product, main) == (10, 4)
    assert _wait_for_status(http, made.json()["id"], "expired", within=10) == "expired"
    assert level(engine, product, main) == (10, 0)

    late = http.post(f"{RESERVATIONS_PATH}/{made.json()['id']}/commit", json=SOLD)
    assert late.status_code == 200, late.text
    assert late.json()["status"] == "committed"
    assert level(engine, product, main) == (6, 0)
    assert ledger_problems(engine) == []


def test_a_late_commit_fails_when_the_swept_stock_was_sold(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    product = create_product(engine, stock={main: 5})
    made = http.post(RESERVATIONS_PATH, json=body(line(product, 5), key="slow", ttl_seconds=1))
    assert _wait_for_status(http, made.json()["id"], "expired", within=10) == "expired"
    rival = http.post(RESERVATIONS_PATH, json=body(line(product, 4), key="rival"))
    assert rival.status_code == 201
    late = http.post(f"{RESERVATIONS_PATH}/{made.json()['id']}/commit", json=SOLD)
    assert late.status_code == 409
    assert late.json()["lines"][0]["available"] == 1
    assert http.get(f"{RESERVATIONS_PATH}/{made.json()['id']}").json()["status"] == "expired"
    assert level(engine, product, main) == (5, 4)
    assert ledger_problems(engine) == []


def test_commits_racing_the_sweeper_sell_each_reservation_exactly_once(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    product = create_product(engine, stock={main: 100})
    made = [
        http.post(RESERVATIONS_PATH, json=body(line(product, 2), key=f"r{i}", ttl_seconds=1))
        for i in range(30)
    ]
    assert {m.status_code for m in made} == {201}
    # Commit right as they fall due, so some are swept first and some are still held.
    due = datetime.fromisoformat(made[len(made) // 2].json()["expires_at"]).timestamp()
    time.sleep(max(0.0, due - time.time()))

    def commit(reservation_id: int) -> Callable[[], httpx.Response]:
        return lambda: http.post(f"{RESERVATIONS_PATH}/{reservation_id}/commit", json=SOLD)

    commits = all_at_once([commit(m.json()["id"]) for m in made], workers=WORKERS)
    assert [c.status_code for c in commits] == [200] * 30
    assert level(engine, product, main) == (40, 0)
    assert len(movements(engine, product, MovementType.SALE)) == 30
    assert ledger_problems(engine) == []


def test_commit_and_release_racing_on_one_reservation_apply_exactly_one(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    product = create_product(engine, stock={main: 60})
    ids = [
        http.post(RESERVATIONS_PATH, json=body(line(product, 3), key=f"r{i}")).json()["id"]
        for i in range(20)
    ]

    def act(reservation_id: int, action: str) -> Callable[[], httpx.Response]:
        return lambda: http.post(f"{RESERVATIONS_PATH}/{reservation_id}/{action}", json=SOLD)

    calls = [act(i, a) for i in ids for a in ("commit", "release")]
    results = all_at_once(calls, workers=WORKERS)
    committed = 0
    for n, reservation_id in enumerate(ids):
        commit, release = results[2 * n], results[2 * n + 1]
        assert sorted([commit.status_code, release.status_code]) == [200, 409]
        final = http.get(f"{RESERVATIONS_PATH}/{reservation_id}").json()["status"]
        assert final == ("committed" if commit.status_code == 200 else "released")
        committed += commit.status_code == 200
    assert level(engine, product, main) == (60 - 3 * committed, 0)
    assert len(movements(engine, product, MovementType.SALE)) == committed
    assert ledger_problems(engine) == []
