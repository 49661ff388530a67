"""What 200 live event-stream clients cost the sale path, and how soon a sale reaches them.

Creates a fresh database and starts products_service and sales_service (one uvicorn worker
each) as bench/sale_path.py does (its seed, services and load runner are reused), then
alternates rounds of ``--requests`` sales (``POST /api/v1/sales`` from ``--concurrency``
threads) with no stream client and with ``--clients`` clients connected to sales_service's
``GET /api/v1/events/stream`` (unfiltered: every sale event and every ``sales.today``).

The clients run in a process of their own, on one asyncio loop with plain sockets (reading
a stream costs the client as little as it can, since client and services share the
machine); ``--probes`` of them parse what they receive and note when each sale's
``sale.recorded`` arrives. The latency of a sale is that arrival minus the moment its
``201`` came back (after its commit); the same from the moment its request left is printed
too, as an upper bound.

It prints, per round, sales/s, the sale's p50/p99 latency, the CPU sales_service spent per
sale, and with clients the commit-to-stream p50/p99/max and the events each client got;
then the change in sale rate between the rounds with and without clients.

    .venv/bin/python bench/live_stream.py                       # 200 clients, 4 pairs
    .venv/bin/python bench/live_stream.py --requests 500 --rounds 1
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.sale_path import (  # noqa: E402
    JWT_SECRET,
    MANAGER_EMAIL,
    CpuMeter,
    Result,
    Service,
    books_balance,
    group_pids,
    run_threads,
    seed,
    service_env,
)
from common import migrate, outbox  # noqa: E402
from common.auth.security import create_access_token  # noqa: E402
from common.db import make_engine  # noqa: E402
from common.models import Role  # noqa: E402
from common.settings import CommonSettings  # noqa: E402

STREAM = "/api/v1/events/stream"


# --- the stream clients (a process of their own) ----------------------------------------


@dataclass(frozen=True)
class ClientsJob:
    port: int
    token: str
    clients: int
    probes: int
    query: str = ""  # the clients' filters, e.g. "type=sale."


async def _open(job: ClientsJob) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """One stream, its response headers read."""
    port, token = job.port, job.token
    path = f"{STREAM}?{job.query}" if job.query else STREAM
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


def _events(messages: list[bytes]) -> list[tuple[int, int | None]]:
    """(event id, sale id of a ``sale.recorded``) of each complete message with an id
    (chunk-size lines of the chunked encoding may sit between messages: lines that are no
    field are skipped)."""
    found = []
    for message in messages:
        lines = message.split(b"\n")
        event_id = next((int(line[4:]) for line in lines if line.startswith(b"id: ")), None)
        if event_id is None:
            continue
        sale_id = None
        if b"event: sale.recorded" in lines:
            data = next(line for line in lines if line.startswith(b"data: "))
            sale_id = int(json.loads(data[6:])["payload"]["sale_id"])
        found.append((event_id, sale_id))
    return found


async def _follow(
    reader: asyncio.StreamReader,
    probe: bool,
    arrivals: list[tuple[int, int | None, float]],
    counts: list[int],
    stop: asyncio.Event,
) -> None:
    buffer = b""
    while not stop.is_set():
        chunk = await reader.read(65536)
        if not chunk:
            return
        counts[0] += chunk.count(b"\nid: ") + chunk.startswith(b"id: ")
        if probe:
            now = time.time()
            buffer += chunk.replace(b"\r\n", b"\n")
            *complete, buffer = buffer.split(b"\n\n")
            arrivals.extend((event_id, sale_id, now) for event_id, sale_id in _events(complete))


async def _clients(job: ClientsJob, ready: Any, stop_flag: Any, results: Any) -> None:
    opened = await asyncio.gather(*(_open(job) for _ in range(job.clients)))
    ready.set()
    stop = asyncio.Event()
    arrivals: list[list[tuple[int, int | None, float]]] = [[] for _ in opened]
    counts = [[0] for _ in opened]
    tasks = [
        asyncio.create_task(_follow(reader, n < job.probes, arrivals[n], counts[n], stop))
        for n, (reader, _) in enumerate(opened)
    ]
    await asyncio.to_thread(stop_flag.wait)
    stop.set()
    for _, writer in opened:
        writer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put(([a for a in arrivals[: job.probes]], [c[0] for c in counts]))


def _clients_process(job: ClientsJob, ready: Any, stop_flag: Any, results: Any) -> None:
    asyncio.run(_clients(job, ready, stop_flag, results))


class StreamClients:
    """``clients`` streams held open by a child process while a round runs."""

    def __init__(self, job: ClientsJob) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop_flag, self.results = (
            context.Event(),
            context.Event(),
            context.Queue(),
        )
        self.process = context.Process(
            target=_clients_process, args=(job, self.ready, self.stop_flag, self.results)
        )

    def __enter__(self) -> "StreamClients":
        self.process.start()
        if not self.ready.wait(60):
            self.process.kill()
            raise RuntimeError("the stream clients did not connect")
        return self

    def finish(self) -> tuple[list[list[tuple[int, int | None, float]]], list[int]]:
        """Stop reading; what the probes saw and how many events each client got."""
        self.stop_flag.set()
        arrivals, counts = self.results.get(timeout=60)
        self.process.join(timeout=30)
        return arrivals, counts

    def __exit__(self, *exc: object) -> None:
        if self.process.is_alive():
            self.process.kill()


# --- the sales ----------------------------------------------------------------------------


@dataclass
class Answers:
    """When each sale's request left and its answer came back (wall clock, for the client
    process to compare with)."""

    sent: dict[int, float] = field(default_factory=dict)
    answered: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def timed_sale(
    client: httpx.Client, channel_id: int, products: list[int], answers: Answers
) -> Callable[[int], str]:
    def one(i: int) -> str:
        sent = time.time()
        response = client.post(
            "/api/v1/sales",
            json={
                "channel_id": channel_id,
                "lines": [{"product_id": products[i % len(products)], "quantity": 1}],
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        answered = time.time()
        if response.status_code != 201 or response.json()["stock_sync"] != "done":
            return f"http {response.status_code}"
        sale_id = int(response.json()["id"])
        with answers.lock:
            answers.sent[sale_id], answers.answered[sale_id] = sent, answered
        return "ok"

    return one


@dataclass
class Round:
    clients: int
    result: Result
    cpu_ms: float  # sales_service's CPU per sale
    client_cpu_ms: float = 0.0  # the stream clients' process, per sale (same machine)
    delays: list[float] = field(default_factory=list)  # answer -> event, seconds
    bounds: list[float] = field(default_factory=list)  # request sent -> event
    events: list[int] = field(default_factory=list)  # per client
    missing: int = 0  # probe x sale pairs not seen (yet) when the round ended
    wrong: int = 0  # probes whose ids differ from the outbox's
    missed: set[int] = field(default_factory=set)  # ids some probe did not get
    repeated: int = 0  # ids a probe got twice


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f}"


def run_round(
    engine: Engine,
    args: argparse.Namespace,
    one: Callable[[Answers], Callable[[int], str]],
    meter: CpuMeter,
    job: ClientsJob | None,
) -> Round:
    answers = Answers()
    if job is None:
        meter.start()
        result = run_threads("sales", args.concurrency, args.requests, one(answers))
        meter.stop()
        return Round(0, result, 1000 * meter.spent["sales"] / max(1, result.recorded))
    with StreamClients(job) as clients:
        time.sleep(1)  # every stream past its connect
        pid = clients.process.pid
        client_meter = CpuMeter({"clients": lambda: [pid] if pid else []})
        meter.start()
        client_meter.start()
        result = run_threads("sales", args.concurrency, args.requests, one(answers))
        client_meter.stop()
        meter.stop()
        time.sleep(3)  # the last sales reach the streams
        arrivals, counts = clients.finish()
    done = Round(job.clients, result, 1000 * meter.spent["sales"] / max(1, result.recorded))
    done.client_cpu_ms = 1000 * client_meter.spent["clients"] / max(1, result.recorded)
    done.events = counts
    for seen in arrivals:
        ids = [event_id for event_id, _, _ in seen]
        if ids:
            kept = outbox_ids(engine, ids[0], ids[-1])
            if ids != kept:  # missed, repeated or out of order
                done.wrong += 1
                done.missed.update(set(kept) - set(ids))
                done.repeated += len(ids) - len(set(ids))
        at = {sale_id: t for _, sale_id, t in seen if sale_id is not None}
        for sale_id, answered in answers.answered.items():
            if sale_id not in at:
                done.missing += 1
                continue
            done.delays.append(max(0.0, at[sale_id] - answered))
            done.bounds.append(at[sale_id] - answers.sent[sale_id])
    return done


def outbox_ids(engine: Engine, first: int, last: int) -> list[int]:
    """The ids the sales outbox holds from ``first`` to ``last``."""
    table = outbox.SALES_OUTBOX
    with engine.connect() as db:
        found = db.execute(
            select(table.c.id).where(table.c.id.between(first, last)).order_by(table.c.id)
        )
        return list(found.scalars())


def print_rounds(rounds: list[Round]) -> None:
    header = (
        f"{'clients':>7} | {'sales/s':>7} | {'sale p50/p99 ms':>15} | {'sales CPU ms/sale':>17} | "
        f"{'commit->stream p50/p99/max ms':>29} | {'sent->stream p99':>16} | "
        f"{'clients CPU ms/sale':>19} | events/client"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in rounds:
        latency = f"{r.result.percentile(0.5):.0f} / {r.result.percentile(0.99):.0f}"
        if r.clients:
            stream = f"{_ms(r.delays, 0.5)} / {_ms(r.delays, 0.99)} / {_ms(r.delays, 1.0)}"
            per_client = f"{min(r.events)}-{max(r.events)}"
            if r.missing:
                per_client += f" ({r.missing} probe x sale not seen in time)"
            if r.wrong:
                per_client += (
                    f" (WRONG: {r.wrong} probes' ids differ from the outbox: missed "
                    f"{sorted(r.missed)[:10]}, {r.repeated} repeated)"
                )
            sent = _ms(r.bounds, 0.99)
            client_cpu = f"{r.client_cpu_ms:.1f}"
        else:
            stream, sent, per_client, client_cpu = "-", "-", "-", "-"
        print(
            f"{r.clients:>7} | {r.result.rate:>7.1f} | {latency:>15} | {r.cpu_ms:>17.1f} | "
            f"{stream:>29} | {sent:>16} | {client_cpu:>19} | {per_client}"
        )
    quiet = [r.result.rate for r in rounds if not r.clients]
    busy = [r.result.rate for r in rounds if r.clients]
    if quiet and busy:
        change = statistics.mean(busy) / statistics.mean(quiet) - 1
        # Each round with clients against the one without just before it: the machine's
        # own drift (other work on it) moves both alike.
        pairs = [b / q - 1 for q, b in zip(quiet, busy, strict=False)]
        delays = [d for r in rounds for d in r.delays]
        print(
            f"\nsale rate with {max(r.clients for r in rounds)} stream clients against none: "
            f"{statistics.median(pairs):+.1%} (median of {len(pairs)} pairs: "
            f"{', '.join(f'{p:+.0%}' for p in pairs)}), {change:+.1%} (mean rates); "
            f"commit -> stream over all rounds: p50 {_ms(delays, 0.5)} ms, "
            f"p99 {_ms(delays, 0.99)} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
        help="server to create the bench database on (default: the local MariaDB as root)",
    )
    parser.add_argument("--requests", type=int, default=600, help="sales per round")
    parser.add_argument("--concurrency", type=int, default=8, help="threads recording sales")
    parser.add_argument("--clients", type=int, default=200, help="stream clients")
    parser.add_argument("--probes", type=int, default=10, help="clients that time events")
    parser.add_argument(
        "--query", default="", help="the clients' filters, e.g. 'type=sale.' (default: none)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="pairs of rounds (none, clients)")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured sales first")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="SHOP_X=VALUE",
        help="a setting for both services (repeatable), e.g. SHOP_STREAM_POLL_SECONDS=0.5",
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.service_env)
    log_dir = REPO_ROOT / "var"
    log_dir.mkdir(exist_ok=True)

    with migrate.scratch_database(args.mysql_url, "shop_bench") as url:
        engine = make_engine(url, pool_size=4, max_overflow=0)
        try:
            manager_id, channel_id, products = seed(engine, args.products)
            settings = CommonSettings(environment="test", database_url=url, jwt_secret=JWT_SECRET)
            token, _ = create_access_token(
                user_id=manager_id, role=Role.MANAGER, settings=settings, email=MANAGER_EMAIL
            )
            env = service_env(url, SHOP_LOG_LEVEL="WARNING", **extra_env)
            products_service = Service(
                "products_service.main:app", env, 1, log_dir / "bench-products.log"
            )
            sales_service = Service(
                "sales_service.main:app",
                {**env, "SHOP_PRODUCTS_SERVICE_URL": products_service.url},
                1,
                log_dir / "bench-sales.log",
            )
            print(
                f"{args.requests} sales a round from {args.concurrency} threads; "
                f"{args.clients} stream clients ({args.probes} timing) on one sales_service worker"
            )
            rounds: list[Round] = []
            try:
                products_service.start()
                sales_service.start()
                assert sales_service.process is not None
                meter = CpuMeter({"sales": partial(group_pids, sales_service.process.pid)})
                job = ClientsJob(sales_service.port, token, args.clients, args.probes, args.query)
                with httpx.Client(
                    base_url=sales_service.url,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                ) as client:

                    def one(answers: Answers) -> Callable[[int], str]:
                        return timed_sale(client, channel_id, products, answers)

                    run_threads("warmup", args.concurrency, args.warmup, one(Answers()))
                    for _ in range(args.rounds):
                        for clients in (None, job):
                            done = run_round(engine, args, one, meter, clients)
                            rounds.append(done)
                            print(
                                f"  {done.clients:>3} clients: {done.result.rate:6.1f} sales/s"
                                + (
                                    f", commit->stream p99 {_ms(done.delays, 0.99)} ms"
                                    if done.clients
                                    else ""
                                )
                            )
            finally:
                sales_service.stop()
                products_service.stop()
            print_rounds(rounds)
            problems = books_balance(engine)
            print("books balance" if not problems else "BOOKS DO NOT BALANCE: " + problems[0])
            return 1 if problems else 0
        finally:
            engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
