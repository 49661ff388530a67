"""How fast a sale is recorded through both services, against the least SQL a sale needs.

Creates a fresh MariaDB/MySQL database (migrated with the Alembic history, seeded with a
manager, a channel, a two-level category tree and plenty of stock over ``--products``
products, each in a subcategory), starts products_service and sales_service as uvicorn
processes on loopback (``--workers`` each, default 1), and for each concurrency level sends
``--requests`` ``POST /api/v1/sales`` (one line of one unit, a fresh Idempotency-Key each)
from that many threads. It then stops the services and, at the same concurrency, records
sales with the least SQL an expert would write for the same effect, with no services in
between: one transaction takes the stock (a conditional UPDATE of the level, checked by
rows affected, and its ledger row), another writes the sale, its line and its outbox event.
That baseline does not grow with our costs: it is what the sale needs, not what we send.

For both it prints sales/s, p50 and p99 latency, SQL statements and commits per sale (the
server's own Com_* counters over the run, so the services' background work counts too),
CPU ms per sale per process group, and the ratio; then checks the books balance and drops
the database.

    .venv/bin/python bench/sale_path.py                       # 8 and 32 clients
    .venv/bin/python bench/sale_path.py --requests 2000 --concurrency 8,16,32
"""

import argparse
import multiprocessing
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Connection, Engine, Table, func, insert, literal, select, text, update
from sqlalchemy.engine import CursorResult, make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from common import migrate, outbox  # noqa: E402
from common.auth.security import create_access_token, hash_password  # noqa: E402
from common.db import (  # noqa: E402
    UTCDateTime,
    make_engine,
    utcnow,
)
from common.models import (  # noqa: E402
    Category,
    MovementType,
    Product,
    Role,
    Sale,
    SaleLine,
    SalesChannel,
    SaleStatus,
    StockLevel,
    StockMovement,
    StockSync,
    User,
    Warehouse,
)
from common.settings import CommonSettings  # noqa: E402

JWT_SECRET = secrets.token_urlsafe(32)
ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 (a throwaway database)
STOCK_PER_PRODUCT = 1_000_000
ROOT_CATEGORIES, SUBCATEGORIES = 4, 5
PRICE, COST = Decimal("19.90"), Decimal("7.25")


@dataclass
class Result:
    """One measured run: how many sales were recorded, how long it took, each latency."""

    label: str
    concurrency: int
    cpu: str = ""
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    sql: str = ""  # statements and commits per sale, from the server's counters

    @property
    def recorded(self) -> int:
        return self.outcomes["ok"]

    @property
    def rate(self) -> float:
        return self.recorded / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# --- database ---------------------------------------------------------------------------


def new_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT just made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


MANAGER_EMAIL = "bench-manager@example.com"


def seed_categories(db: Connection, now: datetime) -> list[int]:
    """A two-level tree (ROOT_CATEGORIES roots, each with SUBCATEGORIES children): leaf ids."""

    def add(slug: str, parent: tuple[int, str] | None) -> tuple[int, str]:
        category_id = new_id(
            db.execute(
                insert(Category).values(
                    name=slug,
                    slug=slug,
                    description="",
                    parent_id=parent[0] if parent else None,
                    path="/",
                    created_at=now,
                    updated_at=now,
                )
            )
        )
        path = f"{parent[1] if parent else '/'}{category_id}/"
        db.execute(update(Category).where(Category.id == category_id).values(path=path))
        return category_id, path

    leaves = []
    for r in range(ROOT_CATEGORIES):
        root = add(f"bench-{r}", None)
        leaves += [add(f"bench-{r}-{c}", root)[0] for c in range(SUBCATEGORIES)]
    return leaves


def seed(engine: Engine, products: int) -> tuple[int, int, list[int]]:
    """A manager, a channel and ``products`` products, each in a subcategory, with plenty of
    stock in MAIN."""
    now = utcnow()
    with engine.begin() as db:
        leaves = seed_categories(db, now)
        manager_id = new_id(
            db.execute(
                insert(User).values(
                    email=MANAGER_EMAIL,
                    full_name="Bench",
                    hashed_password=hash_password("bench-password"),
                    role=Role.MANAGER,
                    is_active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        )
        channel_id = new_id(
            db.execute(
                insert(SalesChannel).values(
                    code="bench", name="Bench", is_active=True, created_at=now, updated_at=now
                )
            )
        )
        warehouse_id = db.scalar(select(Warehouse.id).where(Warehouse.code == "MAIN"))
        db.execute(
            insert(Product),
            [
                {
                    "sku": f"BENCH-{i}",
                    "name": f"Bench product {i}",
                    "category_id": leaves[i % len(leaves)],
                    "description": "",
                    "price": PRICE,
                    "cost_price": COST,
                    "low_stock_threshold": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(products)
            ],
        )
        product_ids = list(db.scalars(select(Product.id).order_by(Product.id)))
        db.execute(
            insert(StockLevel),
            [
                {
                    "product_id": p,
                    "warehouse_id": warehouse_id,
                    "on_hand": STOCK_PER_PRODUCT,
                    "reserved": 0,
                    "updated_at": now,
                }
                for p in product_ids
            ],
        )
        db.execute(
            insert(StockMovement),
            [
                {
                    "product_id": p,
                    "warehouse_id": warehouse_id,
                    "movement_type": MovementType.RECEIPT,
                    "quantity": STOCK_PER_PRODUCT,
                    "on_hand_after": STOCK_PER_PRODUCT,
                    "reason": "bench seed",
                    "reference": "bench",
                    "created_at": now,
                }
                for p in product_ids
            ],
        )
    return int(manager_id), int(channel_id), product_ids


def books_balance(engine: Engine) -> list[str]:
    """Levels whose ledger does not sum to on_hand, or that still hold reserved stock."""
    with engine.connect() as db:
        ledger = dict(
            db.execute(
                select(StockMovement.product_id, func.sum(StockMovement.quantity)).group_by(
                    StockMovement.product_id
                )
            ).all()
        )
        problems = []
        for product_id, on_hand, reserved in db.execute(
            select(StockLevel.product_id, StockLevel.on_hand, StockLevel.reserved)
        ):
            if int(ledger.get(product_id, 0)) != on_hand:
                problems.append(
                    f"product {product_id}: ledger {ledger.get(product_id)} != {on_hand}"
                )
            if reserved:
                problems.append(f"product {product_id}: {reserved} still reserved")
        return problems


# --- services ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A uvicorn process group on loopback; stopped (and its workers with it) on exit."""

    def __init__(self, module: str, env: dict[str, str], workers: int, log: Path) -> None:
        self.module, self.env, self.workers, self.log = module, env, workers, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Start, then wait until every worker has finished its start-up (per the log)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            self.module,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--no-proxy-headers",
            "--log-level",
            "info",  # the start-up lines say when each worker is ready
            "--no-access-log",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited; see {self.log}")
            with self.log.open("rb") as log:
                log.seek(offset)
                started = log.read().count(b"Application startup complete")
            if started >= self.workers:
                try:
                    if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.module} not ready within {timeout}s; see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    # One bench manager records thousands of sales a minute: the rate limit stays on (its
    # cost is measured) but never refuses one. --service-env may override it.
    env["SHOP_RATE_LIMIT_PER_MINUTE"] = "1000000000"
    env.update(
        SHOP_ENVIRONMENT="test",
        SHOP_DATABASE_URL=database_url,
        SHOP_JWT_SECRET=JWT_SECRET,
        SHOP_FIRST_ADMIN_EMAIL="bench-admin@example.com",
        SHOP_FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PYTHONPATH=str(REPO_ROOT),
        **extra,
    )
    return env


# --- server counters --------------------------------------------------------------------

STATEMENTS = ("Com_select", "Com_insert", "Com_insert_select", "Com_update", "Com_delete")


class SqlMeter:
    """Statements and commits the database server ran between start() and stop(), from its
    own counters (everything on the server: the services' background work is counted too)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._start: dict[str, int] = {}
        self.spent: dict[str, int] = {}

    def _read(self) -> dict[str, int]:
        names = ", ".join(f"'{n}'" for n in (*STATEMENTS, "Com_commit"))
        with self.engine.connect() as db:
            rows = db.execute(text(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})"))
            return {name: int(value) for name, value in rows}

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> None:
        now = self._read()
        self.spent = {name: now[name] - self._start[name] for name in now}

    def per_sale(self, sales: int) -> str:
        if not sales:
            return "-"
        statements = sum(self.spent[n] for n in STATEMENTS) / sales
        return f"{statements:.1f} / {self.spent['Com_commit'] / sales:.1f}"


# --- CPU accounting ---------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def group_pids(leader: int) -> list[int]:
    """The processes of one process group (a uvicorn supervisor and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader:
                pids.append(int(entry.name))
    return pids


def database_pids() -> list[int]:
    """The local MariaDB/MySQL server, when it runs on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name in ("mariadbd", "mysqld"):
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds spent per named group of processes between start() and stop()."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.spent: dict[str, float] = {}
        self._pids: dict[str, list[int]] = {}
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._pids = {name: find() for name, find in self.groups.items()}
        self._start = {name: cpu_seconds(pids) for name, pids in self._pids.items()}

    def stop(self) -> None:
        self.spent = {
            name: cpu_seconds(pids) - self._start[name] for name, pids in self._pids.items()
        }

    def per_sale_ms(self, sales: int) -> str:
        if not sales:
            return "-"
        return ", ".join(f"{name} {1000 * s / sales:.2f}" for name, s in self.spent.items())


# --- load -------------------------------------------------------------------------------


def run_threads(label: str, concurrency: int, requests: int, one: Callable[[int], str]) -> Result:
    """Call ``one(i)`` for i in range(requests) from ``concurrency`` threads, timing each."""
    result = Result(label, concurrency)
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            started = time.perf_counter()
            try:
                outcome = one(i)
            except Exception as exc:  # a failed sale is counted, not fatal to the run
                outcome = type(exc).__name__
            elapsed = time.perf_counter() - started
            with lock:
                result.outcomes[outcome] += 1
                if outcome == "ok":
                    result.latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    result.seconds = time.perf_counter() - started
    return result


def http_sale(client: httpx.Client, channel_id: int, products: list[int]) -> Callable[[int], str]:
    def one(_i: int) -> str:
        response = client.post(
            "/api/v1/sales",
            json={
                "channel_id": channel_id,
                "lines": [{"product_id": random.choice(products), "quantity": 1}],
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if response.status_code == 201 and response.json()["stock_sync"] == "done":
            return "ok"
        return f"http {response.status_code}"

    return one


def direct_sale(
    engine: Engine, channel_id: int, manager_id: int, warehouse_id: int, products: list[int]
) -> Callable[[int], str]:
    """The least SQL a sale needs, as an expert would write it without our services: take
    the stock with one conditional UPDATE and append its ledger row (one transaction), then
    write the sale, its line and its event (another). The price, cost and names a sale line
    snapshots are what the caller already has, as a shop's own order system would."""
    levels = cast(Table, StockLevel.__table__)
    movements = cast(Table, StockMovement.__table__)
    sales, sale_lines = cast(Table, Sale.__table__), cast(Table, SaleLine.__table__)
    events = outbox.SALES_OUTBOX
    price, cost = PRICE, COST

    def one(_i: int) -> str:
        product_id, quantity, now = random.choice(products), 1, utcnow()
        key = uuid.uuid4().hex
        with engine.begin() as db:  # take the stock: no row is read before it is changed
            taken = db.execute(
                update(levels)
                .where(
                    levels.c.product_id == product_id,
                    levels.c.warehouse_id == warehouse_id,
                    levels.c.on_hand - levels.c.reserved >= quantity,
                )
                .values(on_hand=levels.c.on_hand - quantity, updated_at=now)
            )
            if taken.rowcount != 1:
                return "short"
            db.execute(
                insert(movements).from_select(
                    [
                        "product_id",
                        "warehouse_id",
                        "movement_type",
                        "quantity",
                        "on_hand_after",
                        "reason",
                        "reference",
                        "actor_id",
                        "created_at",
                    ],
                    select(
                        levels.c.product_id,
                        levels.c.warehouse_id,
                        literal(MovementType.SALE.value),
                        literal(-quantity),
                        levels.c.on_hand,
                        literal("sale line 1"),
                        literal(f"sale:{key}"),
                        literal(manager_id),
                        literal(now, UTCDateTime()),
                    ).where(
                        levels.c.product_id == product_id, levels.c.warehouse_id == warehouse_id
                    ),
                )
            )
        with engine.begin() as db:  # write the sale, its line and its event
            sale_id = new_id(
                db.execute(
                    insert(sales).values(
                        number=f"D-{key[:28]}",
                        channel_id=channel_id,
                        status=SaleStatus.COMPLETED,
                        sold_at=now,
                        units=quantity,
                        total=price * quantity,
                        cost_total=cost * quantity,
                        refunded_units=0,
                        refunded_total=Decimal("0.00"),
                        refunded_cost=Decimal("0.00"),
                        note="",
                        idempotency_key=key,
                        request_hash="",
                        stock_sync=StockSync.DONE,
                        created_by_id=manager_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
            )
            db.execute(
                insert(sale_lines).values(
                    sale_id=sale_id,
                    line_no=1,
                    sold_at=now,
                    product_id=product_id,
                    sku=f"BENCH-{product_id}",
                    product_name=f"Bench product {product_id}",
                    category_id=None,
                    category_name=None,
                    quantity=quantity,
                    unit_price=price,
                    unit_cost=cost,
                    line_total=price * quantity,
                    line_cost=cost * quantity,
                    refunded_quantity=0,
                    refunded_total=Decimal("0.00"),
                    refunded_cost=Decimal("0.00"),
                    allocations=[{"warehouse_id": warehouse_id, "quantity": quantity}],
                )
            )
            db.execute(
                insert(events).values(
                    type="sale.recorded",
                    subject_id=sale_id,
                    payload={"sale_id": sale_id, "product_id": product_id, "units": quantity},
                    occurred_at=now,
                )
            )
        return "ok"

    return one


@dataclass(frozen=True)
class DirectJob:
    """One process's share of a direct-SQL run."""

    url: str
    ids: tuple[int, int, int, list[int]]  # channel, manager, warehouse, products
    concurrency: int
    requests: int
    warmup: int


def _direct_process(job: DirectJob, ready: Any, results: Any) -> None:
    """A client process: warm up, wait for the others, run its share, report what it saw."""
    engine = make_engine(job.url, pool_size=job.concurrency + 2, max_overflow=0)
    try:
        one = direct_sale(engine, *job.ids)
        run_threads("warmup", job.concurrency, job.warmup, one)
        ready.wait()
        started = time.monotonic()
        result = run_threads("direct SQL", job.concurrency, job.requests, one)
        results.put((started, time.monotonic(), result.latencies, dict(result.outcomes)))
    finally:
        engine.dispose()


def run_direct(
    url: str,
    ids: tuple[int, int, int, list[int]],
    counters: Engine,
    *,
    processes: int,
    concurrency: int,
    requests: int,
    warmup: int,
) -> Result:
    """The direct-SQL run from ``processes`` client processes (so that the client's own
    Python does not cap the database on one core), ``concurrency`` threads in all."""
    processes = max(1, min(processes, concurrency))
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(processes + 1), context.Queue()
    workers = [
        context.Process(
            target=_direct_process,
            args=(
                DirectJob(
                    url,
                    ids,
                    concurrency // processes + (n < concurrency % processes),
                    requests // processes + (n < requests % processes),
                    warmup // processes,
                ),
                ready,
                results,
            ),
        )
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    meter = CpuMeter(
        {"bench": lambda: [os.getpid(), *(w.pid for w in workers if w.pid)], "db": database_pids}
    )
    sql = SqlMeter(counters)
    ready.wait()
    meter.start()
    sql.start()
    shares = [results.get() for _ in workers]
    sql.stop()
    meter.stop()
    for worker in workers:
        worker.join()
    result = Result("direct SQL", concurrency)
    result.seconds = max(end for _, end, _, _ in shares) - min(start for start, _, _, _ in shares)
    for _, _, latencies, outcomes in shares:
        result.latencies += latencies
        result.outcomes.update(outcomes)
    result.cpu = meter.per_sale_ms(result.recorded)
    result.sql = sql.per_sale(result.recorded)
    return result


# --- report -----------------------------------------------------------------------------


def print_table(pairs: list[tuple[Result, Result]]) -> None:
    header = (
        f"{'clients':>7} | {'path':<14} | {'sales/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'recorded':>8} | {'failed':<12} | {'SQL/commits':>11} | CPU ms per sale"
    )
    print()
    print(header)
    print("-" * len(header))
    for http_result, direct_result in pairs:
        for r in (http_result, direct_result):
            other = ", ".join(f"{k}={v}" for k, v in r.outcomes.items() if k != "ok") or "-"
            print(
                f"{r.concurrency:>7} | {r.label:<14} | {r.rate:>8.1f} | "
                f"{r.percentile(0.50):>7.1f} | {r.percentile(0.99):>7.1f} | "
                f"{r.recorded:>8} | {other:<12} | {r.sql:>11} | {r.cpu}"
            )
        ratio = http_result.rate / direct_result.rate if direct_result.rate else 0.0
        print(f"{'':>7} | {'ratio':<14} | {ratio:>7.0%}  (full path / direct SQL)")
        print("-" * len(header))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
        help="server to create the bench database on (default: the local MariaDB as root)",
    )
    parser.add_argument("--requests", type=int, default=1000, help="sales per level and path")
    parser.add_argument("--concurrency", default="8,32", help="comma-separated client counts")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per service")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument(
        "--direct-processes",
        type=int,
        default=os.cpu_count() or 2,
        help="client processes sharing the direct-SQL threads (default: one per core)",
    )
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured sales per level")
    parser.add_argument(
        "--log-level", default="INFO", help="SHOP_LOG_LEVEL of both services (INFO as deployed)"
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="SHOP_X=VALUE",
        help="a setting for both services (repeatable), e.g. SHOP_WORKER_THREADS=8",
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.service_env)
    levels = [int(c) for c in args.concurrency.split(",")]
    log_dir = REPO_ROOT / "var"
    log_dir.mkdir(exist_ok=True)

    with migrate.scratch_database(args.mysql_url, "shop_bench") as url:
        pool = max(levels) + 4
        engine = make_engine(url, pool_size=pool, max_overflow=0)
        try:
            manager_id, channel_id, products = seed(engine, args.products)
            with engine.connect() as db:
                warehouse_id = db.execute(
                    select(Warehouse.id).where(Warehouse.code == "MAIN")
                ).scalar_one()
            settings = CommonSettings(environment="test", database_url=url, jwt_secret=JWT_SECRET)
            token, _ = create_access_token(
                user_id=manager_id, role=Role.MANAGER, settings=settings, email=MANAGER_EMAIL
            )
            print(
                f"database {make_url(url).database}: {len(products)} products, "
                f"{args.requests} sales per level, uvicorn --workers {args.workers} per service"
            )

            env = service_env(url, SHOP_LOG_LEVEL=args.log_level, **extra_env)
            products_service = Service(
                "products_service.main:app", env, args.workers, log_dir / "bench-products.log"
            )
            sales_service = Service(
                "sales_service.main:app",
                {**env, "SHOP_PRODUCTS_SERVICE_URL": products_service.url},
                args.workers,
                log_dir / "bench-sales.log",
            )
            http_results: list[Result] = []
            try:
                products_service.start()
                sales_service.start()
                assert products_service.process and sales_service.process
                meter = CpuMeter(
                    {
                        "bench": lambda: [os.getpid()],
                        "sales": partial(group_pids, sales_service.process.pid),
                        "products": partial(group_pids, products_service.process.pid),
                        "db": database_pids,
                    }
                )
                sql = SqlMeter(engine)
                limits = httpx.Limits(
                    max_connections=max(levels) + 8, max_keepalive_connections=max(levels) + 8
                )
                with httpx.Client(
                    base_url=sales_service.url,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                    limits=limits,
                ) as client:
                    one = http_sale(client, channel_id, products)
                    for concurrency in levels:
                        run_threads("warmup", concurrency, args.warmup, one)
                        meter.start()
                        sql.start()
                        result = run_threads("http (2 svc)", concurrency, args.requests, one)
                        sql.stop()
                        meter.stop()
                        result.cpu = meter.per_sale_ms(result.recorded)
                        result.sql = sql.per_sale(result.recorded)
                        http_results.append(result)
                        print(f"  http   {concurrency:>3} clients: {result.rate:7.1f} sales/s")
            finally:
                sales_service.stop()
                products_service.stop()

            direct_results: list[Result] = []
            for concurrency in levels:
                result = run_direct(
                    url,
                    (channel_id, manager_id, warehouse_id, products),
                    engine,
                    processes=args.direct_processes,
                    concurrency=concurrency,
                    requests=args.requests,
                    warmup=args.warmup,
                )
                direct_results.append(result)
                print(f"  direct {concurrency:>3} clients: {result.rate:7.1f} sales/s")

            print_table(list(zip(http_results, direct_results, strict=True)))
            problems = books_balance(engine)
            print(
                "books balance"
                if not problems
                else "BOOKS DO NOT BALANCE: " + "; ".join(problems[:5])
            )
            return 1 if problems else 0
        finally:
            engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
