"""Fixtures for proving the sale path: private servers a test may stop, freeze or kill.

``short_products`` is a products_service whose reservations live 3 s (swept every 0.3 s);
``short_sales`` is a sales_service calling it with short timeouts, a fast stock sync, and a
reconciler that gives back a take no sale claimed 2 s after it landed.
Both run in their own process group, so SIGKILL, SIGSTOP and SIGCONT reach every worker,
and both are brought back up (same port) before each test that uses them. They live for one
test module, so their pooled connections are gone before the next module's load tests.
"""

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from common.db import make_sessionmaker
from common.models import (
    MovementType,
    Role,
    Sale,
    SaleLine,
    SalesChannel,
    SaleStockClaim,
    SaleStockStatus,
    SaleStockTake,
    StockMovement,
    StockSync,
    User,
)
from common.settings import ProductsSettings, SalesSettings
from sales_service.clients.products import ProductsClient
from sales_service.reports import consumer
from tests.conftest import LiveServer, service_env
from tests.products_service.factories import ledger_problems, level

T = TypeVar("T")
RESERVATION_TTL_SECONDS = 3
RECONCILE_GRACE_SECONDS = 2  # a take no sale claimed is given back this long after it landed
SALES_TIMEOUT_SECONDS = 2.5
SALES_RETRIES = 3  # unbounded, 4 timed-out attempts would take 4 x 2.5 s + back-off = 11.3 s
CONCURRENT_SALES = 32
# More pooled connections than requests in flight (plus the background loops): a request
# holds its connection from authentication on, so a smaller pool can starve the threads.
POOL = {"SHOP_DATABASE_POOL_SIZE": "10", "SHOP_DATABASE_MAX_OVERFLOW": "35"}


class RestartableServer(LiveServer):
    """A LiveServer in its own process group: stop, kill, freeze and thaw it whole."""

    paused = False

    own_process_group = True

    def start(self, timeout: float = 90) -> None:
        self.paused = False
        super().start(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _signal(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def stop(self, kill: bool = False) -> None:
        if not self.running:
            return
        assert self.process is not None
        if self.paused:
            self.resume()
        self._signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, but nothing answers."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def ensure_up(self) -> None:
        if self.paused:
            self.resume()
        if not self.running:
            self.start()


@pytest.fixture(scope="module")
def _short_products_server(
    settings: ProductsSettings, users: dict[Role, User]
) -> Iterator[RestartableServer]:
    server = RestartableServer(
        "products_service.main:app",
        service_env(
            settings,
            SHOP_RESERVATION_DEFAULT_TTL_SECONDS=str(RESERVATION_TTL_SECONDS),
            SHOP_RESERVATION_SWEEP_SECONDS="0.3",
            **POOL,
        ),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def _short_sales_server(
    settings: ProductsSettings, _short_products_server: RestartableServer
) -> Iterator[RestartableServer]:
    server = RestartableServer(
        "sales_service.main:app",
        service_env(
            settings,
            SHOP_PRODUCTS_SERVICE_URL=_short_products_server.url,
            SHOP_PRODUCTS_TIMEOUT_SECONDS=str(SALES_TIMEOUT_SECONDS),
            SHOP_PRODUCTS_RETRIES=str(SALES_RETRIES),
            SHOP_STOCK_SYNC_SECONDS="0.3",
            SHOP_STOCK_RECONCILE_GRACE_SECONDS=str(RECONCILE_GRACE_SECONDS),
            **POOL,
        ),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def short_products(_short_products_server: RestartableServer) -> RestartableServer:
    """products_service with 3 s reservations, up when the test starts."""
    _short_products_server.ensure_up()
    return _short_products_server


@pytest.fixture
def short_sales(
    _short_sales_server: RestartableServer, short_products: RestartableServer
) -> RestartableServer:
    """sales_service calling ``short_products`` (2.5 s per attempt, 3 retries, 5 s budget)."""
    _short_sales_server.ensure_up()
    return _short_sales_server


# --- data and checks --------------------------------------------------------------------


def create_channel(engine: Engine, code: str = "web-store", *, is_active: bool = True) -> int:
    with make_sessionmaker(engine)() as session:
        channel = SalesChannel(code=code, name=code.title(), is_active=is_active)
        session.add(channel)
        session.commit()
        return channel.id


@pytest.fixture
def channel(engine: Engine) -> str:
    """An active channel's code."""
    create_channel(engine, "web-store")
    return "web-store"


def sale_count(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(Sale)) or 0


def take_statuses(engine: Engine) -> dict[str, int]:
    """How many sale stock takes are in each status, a taken one split by whether a sale
    claimed it (``taken``) or not (``taken, unclaimed``: stock held for no sale)."""
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(SaleStockTake.status, SaleStockClaim.sale_id).outerjoin(
                SaleStockClaim, SaleStockClaim.stock_key == SaleStockTake.key
            )
        ).all()
    found: Counter[str] = Counter()
    for status, sale_id in rows:
        unclaimed = status is SaleStockStatus.TAKEN and sale_id is None
        found[f"{status.value}, unclaimed" if unclaimed else status.value] += 1
    return dict(found)


def sale_movements_without_a_sale(engine: Engine, product_id: int) -> list[int]:
    """Ids of this product's ``sale`` ledger rows whose take no recorded sale claimed."""
    with make_sessionmaker(engine)() as session:
        claimed = {
            f"sale:{key}"
            for key in session.scalars(
                select(SaleStockClaim.stock_key).where(SaleStockClaim.sale_id.is_not(None))
            )
        }
        rows = session.execute(
            select(StockMovement.id, StockMovement.reference).where(
                StockMovement.product_id == product_id,
                StockMovement.movement_type == MovementType.SALE,
            )
        ).all()
    return [row.id for row in rows if row.reference not in claimed]


def sold_units(engine: Engine, product_id: int) -> dict[str, int]:
    """Units of this product in recorded sales, by the sale's stock_sync state."""
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(Sale.stock_sync, func.sum(SaleLine.quantity))
            .join(SaleLine, SaleLine.sale_id == Sale.id)
            .where(SaleLine.product_id == product_id)
            .group_by(Sale.stock_sync)
        ).all()
        return {state.value: int(units) for state, units in rows}


def stock_problems(engine: Engine, product_id: int, warehouse_id: int, initial: int) -> list[str]:
    """What still stops the books from balancing for this product (empty when settled):
    every unit is on the shelf or in a recorded sale whose stock was taken, nothing is held,
    no stock was taken for a sale that does not stand, no sale is pending or failed, and
    every ledger sums to its level."""
    now = level(engine, product_id, warehouse_id)
    units = sold_units(engine, product_id)
    problems = []
    orphans = take_statuses(engine).get("taken, unclaimed", 0)
    if orphans:
        problems.append(f"{orphans} stock takes claimed by no sale")
    if now.reserved:
        problems.append(f"{now.reserved} units still reserved")
    for state in (StockSync.PENDING, StockSync.FAILED):
        if units.get(state.value):
            problems.append(f"{units[state.value]} units in sales with stock_sync={state.value}")
    done = units.get(StockSync.DONE.value, 0)
    if initial != now.on_hand + done:
        problems.append(f"initial {initial} != on_hand {now.on_hand} + sold (done) {done}")
    return problems + ledger_problems(engine)


def wait_until_settled(
    engine: Engine,
    product_id: int,
    warehouse_id: int,
    initial: int,
    *,
    within: float = 40,
    stable_for: float = 0,
) -> None:
    """Poll until stock_problems() is empty (and stays so for ``stable_for`` seconds, for a
    late request may still hold stock); fail with what is still wrong at the deadline."""
    deadline = time.monotonic() + within
    settled_since: float | None = None
    while True:
        problems = stock_problems(engine, product_id, warehouse_id, initial)
        now = time.monotonic()
        if problems:
            settled_since = None
        elif settled_since is None:
            settled_since = now
        if settled_since is not None and now - settled_since >= stable_for:
            return
        if now > deadline:
            break
        time.sleep(0.2)
    assert problems == [], f"not settled after {within}s: {problems}"
    raise AssertionError(f"settled for less than {stable_for}s within {within}s")


def numbers(sales_client: TestClient, headers: dict, **params: Any) -> list[str]:
    """The numbers of the sales ``GET /sales`` lists with these parameters, in its order."""
    answer = sales_client.get("/api/v1/sales", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    return [item["number"] for item in answer.json()["items"]]


def sale_body(channel_code: str, *lines: tuple[int, int], **extra: Any) -> dict[str, Any]:
    return {
        "channel_code": channel_code,
        "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        **extra,
    }


@pytest.fixture
def sync_args(
    sales_settings: SalesSettings, users: dict[Role, User], engine: Engine
) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Arguments for one run of the background sync against the products_service at a URL."""
    clients: list[ProductsClient] = []

    def make(url: str) -> dict[str, Any]:
        clients.append(ProductsClient(url, retries=0, timeout_seconds=2))
        return {
            "sessions": make_sessionmaker(engine),
            "products_client": clients[-1],
            "settings": sales_settings,
            "service_user_id": users[Role.MANAGER].id,
            "min_age_seconds": 0,
        }

    yield make
    for products_client in clients:
        products_client.close()


@pytest.fixture(params=["in Python", "in the database"])
def summed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test using it runs twice: the rollups' consumer adding new sales from their
    events, and (as it does for a bulk import's batch, on MariaDB/MySQL) the database summing
    them from their lines."""
    in_database = request.param == "in the database"
    monkeypatch.setattr(consumer, "BULK_SALES", 1 if in_database else 10**9)
    return str(request.param)
