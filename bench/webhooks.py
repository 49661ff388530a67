"""How fast webhooks reach a local receiver, and what they cost the sale path.

Creates a fresh MariaDB/MySQL database (seeded as bench/sale_path.py seeds it), starts a
receiver on 127.0.0.1 (its own process: a minimal HTTP/1.1 server that checks every
signature with ``verify_signature`` and answers 204), and the two services as uvicorn
processes. Then:

1. Delivery throughput: for each endpoint count in ``--endpoints``, registers that many
   endpoints (every event), appends ``--events`` events to the products outbox in one
   transaction (through ``common.outbox``, as a burst of stock movements would), and times
   from that commit until the receiver has acknowledged every message: events fanned out,
   claimed, signed, POSTed and recorded. Prints messages/s, the lag from the event to its
   arrival (p50/p99), and the CPU per message of each process group.
2. The sale path with webhooks off (``SHOP_WEBHOOKS_ENABLED=false``), idle (on, with no
   endpoint: the fan-out consumers and the claim loops run) and on (one endpoint taking
   every event, delivering while the sales are recorded), ``--sales`` sales from
   ``--concurrency`` clients each (``POST /api/v1/sales``, as sale_path.py sends them), in
   turns ``--rounds`` times: sales/s, p50/p99, the messages delivered meanwhile, and the CPU
   per sale of each process group.

    .venv/bin/python bench/webhooks.py                         # about three minutes
    .venv/bin/python bench/webhooks.py --events 5000 --endpoints 1,8 --rounds 3
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.sale_path import (  # noqa: E402
    ADMIN_PASSWORD,
    JWT_SECRET,
    MANAGER_EMAIL,
    CpuMeter,
    Result,
    Service,
    database_pids,
    free_port,
    group_pids,
    http_sale,
    run_threads,
    seed,
    service_env,
)
from common import migrate, outbox  # noqa: E402
from common.auth.security import create_access_token  # noqa: E402
from common.db import make_engine  # noqa: E402
from common.models import Role  # noqa: E402
from common.settings import CommonSettings  # noqa: E402
from common.webhooks import InvalidSignature, verify_signature  # noqa: E402

ADMIN_EMAIL = "bench-admin@example.com"
API = "/api/v1"


# --- the receiver (a process of its own) -------------------------------------------------


def receiver_main(port: int, ready: Any) -> None:
    """Serve until killed: POST <path> verifies and counts a message; GET /stats answers
    the counts and each message's lag; POST /secrets (JSON path -> secret) sets the keys;
    DELETE /stats resets."""
    secrets: dict[str, str] = {}
    stats: dict[str, Any] = {"ok": 0, "bad": 0, "ids": set(), "lags": [], "last": 0.0}

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET":
            answer = {
                "ok": stats["ok"],
                "bad": stats["bad"],
                "distinct": len(stats["ids"]),
                "lags": stats["lags"],
                "last": stats["last"],
            }
            return 200, json.dumps(answer).encode()
        if method == "DELETE":
            stats.update(ok=0, bad=0, ids=set(), lags=[], last=0.0)
            return 204, b""
        if path == "/secrets":
            secrets.update(json.loads(body))
            return 204, b""
        try:
            message = verify_signature(secrets.get(path, "whsec_"), headers, body)
        except (InvalidSignature, ValueError):
            stats["bad"] += 1
            return 400, b""
        now = time.time()
        stats["ok"] += 1
        stats["ids"].add((path, message["id"]))
        stats["last"] = now
        occurred = datetime.fromisoformat(message["occurred_at"]).timestamp()
        stats["lags"].append(now - occurred)
        return 204, b""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ": " in line:
                        name, value = line.split(": ", 1)
                        headers[name.lower()] = value
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, payload = handle(method, path, headers, body)
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-length: {len(payload)}\r\n"
                    f"content-type: application/json\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=512)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        self.process = context.Process(target=receiver_main, args=(self.port, ready), daemon=True)
        self.process.start()
        if not ready.wait(30):
            raise RuntimeError("the receiver did not start")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/stats").json())

    def reset(self) -> None:
        self.http.delete("/stats")

    def set_secrets(self, secrets: dict[str, str]) -> None:
        self.http.post("/secrets", json=secrets)

    def stop(self) -> None:
        self.http.close()
        self.process.kill()
        self.process.join()


# --- helpers ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def register(api: httpx.Client, receiver: Receiver, count: int, **body: Any) -> list[int]:
    ids, secrets = [], {}
    for n in range(count):
        path = f"/e{n}"
        answer = api.post("/webhooks", json={"url": receiver.url + path, **body})
        answer.raise_for_status()
        ids.append(answer.json()["id"])
        secrets[path] = answer.json()["secret"]
    receiver.set_secrets(secrets)
    return ids


def unregister(api: httpx.Client, ids: list[int]) -> None:
    for endpoint_id in ids:
        api.delete(f"/webhooks/{endpoint_id}").raise_for_status()


def burst(engine: Engine, events: int, products: list[int]) -> float:
    """Append ``events`` stock movements to the products outbox in one transaction; answers
    when it committed."""
    rows = [
        outbox.event(
            "stock.moved",
            products[n % len(products)],
            {
                "product_id": products[n % len(products)],
                "warehouse_id": 1,
                "movement_type": "adjustment",
                "quantity": -1,
                "on_hand_after": 1000,
                "reason": "bench",
            },
        )
        for n in range(events)
    ]
    with engine.begin() as connection:
        outbox.append(connection, outbox.PRODUCTS_OUTBOX, rows)
    return time.time()


def wait_for(receiver: Receiver, expected: int, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        stats = receiver.stats()
        if stats["distinct"] >= expected:
            return stats
        time.sleep(0.2)
    raise RuntimeError(f"only {receiver.stats()['distinct']} of {expected} messages arrived")


def start(env: dict[str, str], workers: int, log_dir: Path) -> tuple[Service, Service]:
    products = Service("products_service.main:app", env, workers, log_dir / "bench-products.log")
    products.start()
    sales = Service(
        "sales_service.main:app",
        {**env, "SHOP_PRODUCTS_SERVICE_URL": products.url},
        workers,
        log_dir / "bench-sales.log",
    )
    sales.start()
    return products, sales


def meter_for(products: Service, sales: Service, receiver: Receiver) -> CpuMeter:
    assert products.process and sales.process and receiver.process.pid
    receiver_pid = receiver.process.pid
    return CpuMeter(
        {
            "products": partial(group_pids, products.process.pid),
            "sales": partial(group_pids, sales.process.pid),
            "db": database_pids,
            "receiver": lambda: [receiver_pid],
        }
    )


# --- the two measurements ---------------------------------------------------------------


def measure_throughput(
    engine: Engine,
    admin: httpx.Client,
    receiver: Receiver,
    meter: CpuMeter,
    *,
    endpoints: int,
    events: int,
    products: list[int],
) -> str:
    ids = register(admin, receiver, endpoints)
    receiver.reset()
    meter.start()
    committed = burst(engine, events, products)
    stats = wait_for(receiver, events * endpoints, within=600)
    meter.stop()
    unregister(admin, ids)
    seconds = stats["last"] - committed
    messages = events * endpoints
    lags = stats["lags"]
    return (
        f"{endpoints:>9} | {messages:>8} | {messages / seconds:>10.1f} | "
        f"{percentile(lags, 0.5) * 1000:>8.0f} | {percentile(lags, 0.99) * 1000:>8.0f} | "
        f"{stats['ok'] - stats['distinct']:>5} | {stats['bad']:>3} | "
        f"{meter.per_sale_ms(messages)}"
    )


def measure_sales(
    client: httpx.Client,
    receiver: Receiver,
    meter: CpuMeter,
    label: str,
    *,
    channel_id: int,
    products: list[int],
    sales: int,
    concurrency: int,
    warmup: int,
) -> tuple[Result, int]:
    """The sale path's run; ``result.cpu`` is the CPU per sale of each process group (the
    services' background work, webhooks included, counts)."""
    one = http_sale(client, channel_id, products)
    run_threads("warmup", concurrency, warmup, one)
    receiver.reset()
    meter.start()
    result = run_threads(label, concurrency, sales, one)
    meter.stop()
    result.cpu = meter.per_sale_ms(result.recorded)
    return result, int(receiver.stats()["ok"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    )
    parser.add_argument("--events", type=int, default=3000, help="events per throughput run")
    parser.add_argument("--endpoints", default="1,4", help="endpoint counts to measure")
    parser.add_argument("--sales", type=int, default=400, help="sales per sale-path run")
    parser.add_argument("--concurrency", type=int, default=8, help="sale-path clients")
    parser.add_argument("--rounds", type=int, default=2, help="turns of sale-path runs")
    parser.add_argument(
        "--modes",
        default="off,idle,on",
        help="sale-path runs of each turn: off (SHOP_WEBHOOKS_ENABLED=false), idle (on, no "
        "endpoint), on (one endpoint taking every event)",
    )
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per service")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--service-env", action="append", default=[], metavar="SHOP_X=VALUE")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.service_env)
    log_dir = REPO_ROOT / "var"
    log_dir.mkdir(exist_ok=True)

    receiver = Receiver()
    try:
        with migrate.scratch_database(args.mysql_url, "shop_bench") as url:
            engine = make_engine(url, pool_size=args.concurrency + 4, max_overflow=0)
            try:
                return run(args, url, engine, receiver, extra_env, log_dir)
            finally:
                engine.dispose()
    finally:
        receiver.stop()


def run(
    args: argparse.Namespace,
    url: str,
    engine: Engine,
    receiver: Receiver,
    extra_env: dict[str, str],
    log_dir: Path,
) -> int:
    manager_id, channel_id, products = seed(engine, args.products)
    settings = CommonSettings(environment="test", database_url=url, jwt_secret=JWT_SECRET)
    token, _ = create_access_token(
        user_id=manager_id, role=Role.MANAGER, settings=settings, email=MANAGER_EMAIL
    )
    env = service_env(
        url,
        SHOP_LOG_LEVEL=args.log_level,
        SHOP_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",  # the receiver's
        **extra_env,
    )
    print(
        f"{len(products)} products; uvicorn --workers {args.workers} per service; receiver "
        f"{receiver.url}; started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )

    # 1. delivery throughput
    products_service, sales_service = start(env, args.workers, log_dir)
    try:
        admin = admin_client(products_service)
        meter = meter_for(products_service, sales_service, receiver)
        print()
        print(
            f"{'endpoints':>9} | {'messages':>8} | {'messages/s':>10} | {'lag p50':>8} | "
            f"{'lag p99':>8} | {'dupes':>5} | {'bad':>3} | CPU ms per message"
        )
        for count in [int(c) for c in args.endpoints.split(",")]:
            print(
                measure_throughput(
                    engine,
                    admin,
                    receiver,
                    meter,
                    endpoints=count,
                    events=args.events,
                    products=products,
                )
            )
        admin.close()
    finally:
        sales_service.stop()
        products_service.stop()

    # 2. the sale path, webhooks off and on, in turns
    modes = args.modes.split(",")
    results: dict[str, list[tuple[Result, int]]] = {mode: [] for mode in modes}
    limits = httpx.Limits(
        max_connections=args.concurrency + 8, max_keepalive_connections=args.concurrency + 8
    )
    for _round in range(args.rounds):
        for mode in modes:
            mode_env = {**env, "SHOP_WEBHOOKS_ENABLED": "false" if mode == "off" else "true"}
            products_service, sales_service = start(mode_env, args.workers, log_dir)
            try:
                with (
                    httpx.Client(
                        base_url=sales_service.url,
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=60,
                        limits=limits,
                    ) as client,
                    admin_client(products_service) as admin,
                ):
                    ids = register(admin, receiver, 1 if mode == "on" else 0)
                    outcome = measure_sales(
                        client,
                        receiver,
                        meter_for(products_service, sales_service, receiver),
                        f"webhooks {mode}",
                        channel_id=channel_id,
                        products=products,
                        sales=args.sales,
                        concurrency=args.concurrency,
                        warmup=args.warmup,
                    )
                    results[mode].append(outcome)
                    unregister(admin, ids)
                    result, delivered = outcome
                    print(
                        f"  sale path, webhooks {mode:>4}: {result.rate:6.1f} sales/s "
                        f"(p50 {result.percentile(0.5):.0f} ms, p99 "
                        f"{result.percentile(0.99):.0f} ms), {delivered} messages delivered "
                        f"meanwhile; CPU ms per sale: {result.cpu}"
                    )
            finally:
                sales_service.stop()
                products_service.stop()
    print()
    for mode, runs in results.items():
        if not runs:  # --rounds 0: throughput alone
            continue
        rates = [r.rate for r, _ in runs]
        failed = sum(sum(v for k, v in r.outcomes.items() if k != "ok") for r, _ in runs)
        services_cpu = [_services_cpu(r.cpu) for r, _ in runs]
        print(
            f"sale path, webhooks {mode:>4}: mean {statistics.mean(rates):6.1f} sales/s over "
            f"{len(rates)} runs ({', '.join(f'{x:.1f}' for x in rates)}); CPU ms per sale in "
            f"the two services {statistics.mean(services_cpu):.1f} "
            f"({', '.join(f'{x:.1f}' for x in services_cpu)}); failed sales: {failed}"
        )
    if "off" in results and "on" in results and len(results["off"]) >= 2:
        print(compare(results["off"], results["on"]))
    return 0


def compare(off: list[tuple[Result, int]], on: list[tuple[Result, int]]) -> str:
    """How the sale rate with webhooks on differs from off, against the runs' own spread:
    the change of each round's "on" run from its "off" run, the coefficient of variation of
    each mode's runs, and Welch's t of the two means (|t| under 2: no difference this run
    can tell from noise)."""
    off_rates, on_rates = [r.rate for r, _ in off], [r.rate for r, _ in on]
    pairs = [b / a - 1 for a, b in zip(off_rates, on_rates, strict=False)]
    spread = {
        name: statistics.stdev(rates) / statistics.mean(rates)
        for name, rates in (("off", off_rates), ("on", on_rates))
    }
    error = (
        statistics.variance(off_rates) / len(off_rates)
        + statistics.variance(on_rates) / len(on_rates)
    ) ** 0.5
    t = (statistics.mean(on_rates) - statistics.mean(off_rates)) / error if error else 0.0
    change = statistics.mean(on_rates) / statistics.mean(off_rates) - 1
    return (
        f"on vs off: mean rate {change:+.1%} (rounds: {', '.join(f'{p:+.1%}' for p in pairs)}); "
        f"runs vary by {spread['off']:.1%} (off) and {spread['on']:.1%} (on); Welch's t {t:+.2f}"
    )


def _services_cpu(cpu: str) -> float:
    """products + sales out of a CpuMeter line ("products 4.1, sales 9.0, db 3.2, ...")."""
    parts = dict(item.rsplit(" ", 1) for item in cpu.split(", "))
    return float(parts["products"]) + float(parts["sales"])


def admin_client(products_service: Service) -> httpx.Client:
    login = httpx.post(
        f"{products_service.url}{API}/auth/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    login.raise_for_status()
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return httpx.Client(base_url=products_service.url + API, headers=auth, timeout=60)


if __name__ == "__main__":
    raise SystemExit(main())
