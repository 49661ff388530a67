"""Concurrent stock changes against a real server (2 worker processes) and MariaDB.

Row locks must serialise every change of a level: no lost update, no oversell, and the
ledger still sums to on_hand when the dust settles.
"""

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import LiveServer
from tests.products_service.test_inventory import (
    API,
    ledger_check,
    ledger_rows,
    main_warehouse,
    make_product,
    make_warehouse,
    on_hand,
    receive,
)

pytestmark = pytest.mark.live


def run_concurrently(jobs: list[Callable[[httpx.Client], Any]], workers: int) -> list[Any]:
    """Run each job on its own thread with its own connection, all released at once."""

    def run(job: Callable[[httpx.Client], Any]) -> Any:
        with httpx.Client(timeout=60) as http:
            return job(http)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, jobs))


def test_concurrent_receipts_and_adjustments_lose_no_update(
    client: TestClient,
    engine: Engine,
    manager_headers: dict,
    live_products: LiveServer,
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    receive(client, manager_headers, product, wh, 30)
    rng = random.Random(7)
    # Each thread sends a few changes; some removals will find too little and get a 409.
    plans = [[rng.choice([5, 3, -4, -9, 1, -2]) for _ in range(5)] for _ in range(20)]

    def job(deltas: list[int]) -> Callable[[httpx.Client], list[tuple[int, int]]]:
        def send(http: httpx.Client) -> list[tuple[int, int]]:
            results = []
            for delta in deltas:
                target: dict[str, Any] = {"product_id": product, "warehouse_id": wh}
                if delta > 0 and delta % 2:
                    path, body = "/receipts", {**target, "quantity": delta}
                else:
                    path, body = "/adjustments", {**target, "quantity": delta, "reason": "race"}
                response = http.post(
                    f"{live_products.url}{API}{path}", json=body, headers=manager_headers
                )
                results.append((response.status_code, delta))
            return results

        return send

    outcomes = [r for results in run_concurrently([job(p) for p in plans], 20) for r in results]
    statuses = {status for status, _ in outcomes}
    assert statuses <= {201, 409}, outcomes
    applied = [delta for status, delta in outcomes if status == 201]
    assert on_hand(engine, product, wh) == 30 + sum(applied)
    assert len(ledger_rows(engine, product)) == 1 + len(applied)
    assert ledger_check(client, manager_headers)["ok"] is True


def test_concurrent_first_receipts_create_one_level_row(
    client: TestClient,
    engine: Engine,
    manager_headers: dict,
    live_products: LiveServer,
) -> None:
    product = make_product(engine)
    fresh = make_warehouse(engine, "FRESH")

    def send(http: httpx.Client) -> int:
        response = http.post(
            f"{live_products.url}{API}/receipts",
            json={"product_id": product, "warehouse_id": fresh, "quantity": 2},
            headers=manager_headers,
        )
        return response.status_code

    statuses = run_concurrently([send] * 20, 20)
    assert statuses.count(201) == 20, statuses
    assert on_hand(engine, product, fresh) == 40
    levels = client.get(
        f"{API}/levels", params={"product_id": product}, headers=manager_headers
    ).json()
    assert levels["total"] == 1
    assert ledger_check(client, manager_headers)["ok"] is True


def test_damage_race_never_oversells(
    client: TestClient,
    engine: Engine,
    manager_headers: dict,
    live_products: LiveServer,
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    receive(client, manager_headers, product, wh, 50)

    def send(http: httpx.Client) -> int:
        response = http.post(
            f"{live_products.url}{API}/damages",
            json={"product_id": product, "warehouse_id": wh, "quantity": 1, "reason": "race"},
            headers=manager_headers,
        )
        return response.status_code

    statuses = run_concurrently([send] * 80, 40)
    assert statuses.count(201) == 50, statuses
    assert statuses.count(409) == 30, statuses
    assert on_hand(engine, product, wh) == 0
    assert len(ledger_rows(engine, product)) == 51
    assert ledger_check(client, manager_headers)["ok"] is True


def test_concurrent_retries_with_one_key_change_stock_once(
    client: TestClient,
    engine: Engine,
    manager_headers: dict,
    live_products: LiveServer,
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)

    def send(http: httpx.Client) -> tuple[int, Any]:
        response = http.post(
            f"{live_products.url}{API}/receipts",
            json={"product_id": product, "warehouse_id": wh, "quantity": 3},
            headers={**manager_headers, "Idempotency-Key": "same-delivery"},
        )
        return response.status_code, response.json()

    results = run_concurrently([send] * 10, 10)
    # A retry arriving while the first is still running may be told to retry (409).
    answers = [body for status, body in results if status == 201]
    assert answers
    assert all(body == answers[0] for body in answers)
    assert {status for status, _ in results} <= {201, 409}
    assert on_hand(engine, product, wh) == 3
    assert len(ledger_rows(engine, product)) == 1
