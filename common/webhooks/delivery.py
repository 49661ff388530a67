"""The delivery worker: POSTs due deliveries, signed, in order per endpoint, and records what
happened; plus the runner that a service's lifespan starts (fan-out and delivery).

Order and ownership. A worker leases a whole endpoint (``lease_token``/``leased_until`` on
its row, taken with ``FOR UPDATE SKIP LOCKED`` so replicas never wait on each other), then
sends that endpoint's pending deliveries oldest first, one at a time: a delivery waits until
every earlier one of its endpoint has succeeded or finally failed. Endpoints are delivered
concurrently, up to ``webhook_max_concurrency`` per process; a worker keeps a drained
endpoint a moment for its next events, unless every slot is taken and another endpoint is
waiting for one: then it lets go after each batch, so busy endpoints never starve the rest.

At least once. No transaction is open while a POST is in flight: a worker reads a batch
(one short transaction), sends, then records the outcomes and renews its lease (another).
A process killed mid-batch recorded nothing for what it sent since: when its lease runs out
(``webhook_lease_seconds``), another worker (or the restarted process) takes the endpoint
and sends those deliveries again, with the same Webhook-Id. Receivers deduplicate on it.

Retries. A POST succeeds on a 2xx answer; anything else (another status, a redirect, a
refused connection, no answer within ``webhook_timeout_seconds``) is a failed try, and the
delivery waits ``uniform(0, min(cap, base * 2 ** (n - 1)))`` seconds after its n-th failed
try ("full jitter"). Once it has been retried for ``webhook_retry_max_age_seconds`` since it
was queued, its next failure is final: the delivery is ``failed`` and, with
``webhook_auto_disable``, its endpoint is disabled with the reason (its later deliveries
wait, and re-enabling it gives them a fresh retry window).

Isolation from the sale path: the worker runs on threads of its own (one per endpoint being
delivered, at most ``webhook_max_concurrency``; a hung receiver holds one of them, never a
request's), with a database connection pool of its own, and touches only the webhook tables
and reads the outbox. Each endpoint's messages go one at a time, on one blocking HTTP
connection kept between them (``Sender``). It runs in a worker process of products_service
(``common.webhooks.worker``), which fans out both outboxes (sales_service's too): threads in
a process that serves requests would hold its interpreter lock while the requests wait. Its
threads run at a lower CPU priority (``BACKGROUND_NICE``, on Linux), so when the cores are
busy the requests of both services go first and delivery takes the time they leave: it
lags a little more under load instead of slowing the sales it reports.
"""

import contextlib
import functools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine

from common.db import make_engine, retry_lock_conflicts, utcnow
from common.kept_connections import KeptConnection, default_port
from common.settings import CommonSettings
from common.webhooks import repository
from common.webhooks.addresses import IPNetwork, connect
from common.webhooks.fanout import BATCH as FAN_OUT_BATCH
from common.webhooks.fanout import Source, fan_out_once
from common.webhooks.repository import Due, Target
from common.webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

BATCH = 100  # deliveries of one endpoint read, sent and recorded together
USER_AGENT = "shop-webhooks/1.0"
ANSWER_BYTES_KEPT = 64 * 1024  # read at most this much of an answer (then drop the connection)
ERROR_CHARS = 500
PRUNE_EVERY_SECONDS = 3600.0
LINGER_POLLS = 5  # polls an endpoint's thread waits for new deliveries before letting go
# The webhook threads' nice value (Linux schedules each thread on its own): when the cores are
# busy, requests (a sale's stock take above all) run first and delivery takes the time left.
BACKGROUND_NICE = 10


def _in_background(loop: Callable[..., None]) -> Callable[..., None]:
    """``loop`` run at a lower CPU priority, where the system allows a thread its own."""

    @functools.wraps(loop)
    def run(*args: Any) -> None:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        loop(*args)

    return run


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed delivery is tried again, and when it has failed for good."""

    base_seconds: float
    cap_seconds: float
    max_age_seconds: float

    @classmethod
    def of(cls, settings: CommonSettings) -> "RetryPolicy":
        return cls(
            settings.webhook_retry_base_seconds,
            settings.webhook_retry_cap_seconds,
            settings.webhook_retry_max_age_seconds,
        )

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed try in a row (1 for the first)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(max(failures - 1, 0), 62))
        return (rng or random).uniform(0, ceiling)

    def gives_up(self, queued_at: datetime, now: datetime) -> bool:
        """A failure now is final: the delivery has been retried for the whole window."""
        return (now - queued_at).total_seconds() >= self.max_age_seconds


@dataclass(frozen=True)
class Outcome:
    """One POST of one delivery."""

    due: Due
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """Sends one endpoint's messages, one at a time, on a connection kept between them
    (``common.kept_connections``: on a busy machine the sales a delivery reports pay for
    its CPU). Connections go only to addresses ``addresses.refusal`` lets through
    (``addresses.connect``); no proxy is taken from the environment, and redirects are not
    followed (a 3xx fails).
    """

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self.connect = functools.partial(connect, allowed=tuple(allowed))
        self.connection: KeptConnection | None = None

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    def post(self, target: Target, due: Due, within: float) -> Outcome:
        """Send one delivery once; never raises (every failure is an outcome). The answer
        must come within ``within`` seconds (each step of connecting and sending too), and
        its body is read only while in time, its first ``ANSWER_BYTES_KEPT`` at most."""
        body = due.payload.encode()  # the JSON text as queued: what is signed is what is sent
        headers = {
            **signed_headers(target.secrets, due.message_id, body),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        attempted_at = utcnow()
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            url = _parsed(target.url)
            connection = self._connection(url, within)
            answer = connection.request(
                "POST",
                url.target,
                headers,
                body,
                limit=ANSWER_BYTES_KEPT,
                deadline=started + within,
            )
            status_code = answer.status
            if not answer.is_success:
                text = answer.body[:300].decode(errors="replace").strip()
                error = f"HTTP {status_code}" + (f": {text}" if text else "")
        except TimeoutError:
            self.close()
            status_code, error = None, f"no answer within {within:g} s"
        except Exception as exc:  # refused, reset, a TLS failure, a bad answer: a failed try
            self.close()
            status_code = None
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency_ms = round((time.perf_counter() - started) * 1000)
        return Outcome(due, attempted_at, status_code, error and error[:ERROR_CHARS], latency_ms)

    def _connection(self, url: "_URL", within: float) -> KeptConnection:
        """The kept connection if it is to the same origin and still open, else a new one."""
        connection = self.connection
        if connection is not None and connection.origin == url.origin and connection.reusable():
            connection.settimeout(within)
            return connection
        self.close()
        scheme, host, port = url.origin
        self.connection = KeptConnection(scheme, host, port, timeout=within, connect=self.connect)
        return self.connection


@dataclass(frozen=True)
class _URL:
    origin: tuple[str, str, int]  # scheme, host (IDNA, brackets off an IPv6 one), port
    target: str  # path and query, as sent


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> _URL:
    """An endpoint's URL parsed once, not for every message, by httpx's parser (the one
    that checked it when it was registered)."""
    parsed = httpx.URL(url)
    scheme = parsed.scheme
    port = parsed.port or default_port(scheme)
    host = parsed.raw_host.decode("ascii")
    return _URL((scheme, host, port), parsed.raw_path.decode("ascii"))


def record(
    engine: Engine,
    endpoint_id: int,
    token: str,
    outcomes: Sequence[Outcome],
    *,
    policy: RetryPolicy,
    auto_disable: bool,
    lease_seconds: float,
    keep_lease: bool,
) -> bool:
    """Write a batch's tries, their deliveries' new states and the endpoint's health, and
    renew or release the lease, in one transaction. Answers whether the endpoint is still
    active and leased to ``token``."""

    def write() -> bool:
        now = utcnow()
        with engine.begin() as connection:
            endpoint = repository.lock_endpoint(connection, endpoint_id)
            if endpoint is None:  # deleted meanwhile, its deliveries with it
                return False
            repository.log_attempts(
                connection,
                [
                    {
                        "delivery_id": o.due.id,
                        "attempted_at": o.attempted_at,
                        "status_code": o.status_code,
                        "error": o.error,
                        "latency_ms": o.latency_ms,
                    }
                    for o in outcomes
                ],
            )
            state: dict[str, Any] = {}
            succeeded = [o for o in outcomes if o.ok]
            repository.mark_succeeded(connection, [o.due.id for o in succeeded], now=now)
            if succeeded:
                state.update(consecutive_failures=0, failing_since=None)
            # A batch stops at its first failure, so there is at most one, and it is last.
            for outcome in (o for o in outcomes if not o.ok):
                state.update(
                    consecutive_failures=(
                        state.get("consecutive_failures", endpoint.consecutive_failures) + 1
                    ),
                    failing_since=state.get("failing_since") or endpoint.failing_since or now,
                )
                last = {
                    "last_attempt_at": outcome.attempted_at,
                    "last_status_code": outcome.status_code,
                    "last_error": outcome.error,
                    "last_latency_ms": outcome.latency_ms,
                }
                if not policy.gives_up(outcome.due.queued_at, now):
                    wait = policy.delay(outcome.due.round_attempts + 1)
                    retry = {"next_attempt_at": now + timedelta(seconds=wait)}
                    repository.finish_delivery(connection, outcome.due.id, {**last, **retry})
                    continue
                final = {"status": repository.FAILED, "next_attempt_at": None}
                repository.finish_delivery(connection, outcome.due.id, {**last, **final})
                if auto_disable and endpoint.is_active:
                    reason = _disable_reason(outcome, now)
                    state.update(is_active=False, disabled_at=now, disabled_reason=reason)
                    logger.warning("webhook endpoint %d disabled: %s", endpoint_id, reason)
            ours = endpoint.lease_token == token
            active = bool(state.get("is_active", endpoint.is_active))
            if ours:
                if keep_lease and active:
                    state["leased_until"] = now + timedelta(seconds=lease_seconds)
                else:
                    state.update(lease_token=None, leased_until=None)
            if state:
                repository.update_endpoint_state(connection, endpoint_id, state)
            return ours and active

    return retry_lock_conflicts(write)


def _disable_reason(outcome: Outcome, now: datetime) -> str:
    hours = (now - outcome.due.queued_at).total_seconds() / 3600
    tries = outcome.due.round_attempts + 1
    return (
        f"Disabled automatically: delivery {outcome.due.id} ({outcome.due.message_id}) failed "
        f"{tries} tries over {hours:.1f} h; last: {outcome.error}"
    )[:500]


class WebhookRunner:
    """Fan-out of one outbox and delivery of every due webhook, on threads of one process.

    ``start()`` it, ``stop()`` it; every replica of either service may run one. One thread
    fans the outbox out, one claims due endpoints, and each claimed endpoint is delivered by
    a thread of its own (at most ``webhook_max_concurrency``), which ends when the endpoint
    has nothing due. They are daemon threads: a POST still hanging at exit holds nothing up
    (its lease runs out and another worker sends it again).
    """

    def __init__(self, settings: CommonSettings, sources: Sequence[Source]) -> None:
        self.settings = settings
        self.sources = tuple(sources)
        self.policy = RetryPolicy.of(settings)
        concurrency = settings.webhook_max_concurrency
        self.engine = make_engine(settings.database_url, pool_size=2, max_overflow=concurrency)
        self.stopping = threading.Event()
        self.wake = threading.Event()  # the claim loop: something may be due
        self.queued = threading.Condition()  # lingering endpoint threads: deliveries queued
        # Every slot is taken and another endpoint waits for one: held endpoints let go after
        # their batch instead of lingering, so that no endpoint is starved by busier ones.
        self.crowded = threading.Event()
        self.leases: dict[int, str] = {}  # endpoint id -> token, while a thread delivers it
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        loops: list[tuple[str, Callable[[], None]]] = [("claim", self._claim_loop)]
        for source in self.sources:
            loops.append((f"fan-out-{source}", functools.partial(self._fan_out_loop, source)))
        for name, loop in loops:
            thread = threading.Thread(
                target=_in_background(loop), name=f"webhooks-{name}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming and fanning out; deliveries finish the POST in flight, record it and
        let their endpoint go. One still hanging at ``timeout`` is left to its daemon
        thread, and its endpoint handed over now (another worker sends that message again)."""
        self.stopping.set()
        self.wake.set()
        with self.queued:
            self.queued.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:
            with self.lock:
                if not self.leases:
                    break
            time.sleep(0.02)
        with self.lock:
            held = list(self.leases.items())
        if held:
            with contextlib.suppress(Exception), self.engine.begin() as connection:
                repository.release(connection, held)
        self.engine.dispose()

    def _fan_out_loop(self, source: Source) -> None:
        while not self.stopping.is_set():
            try:
                read, queued = fan_out_once(self.engine, source)
            except Exception:
                logger.exception("webhook fan-out of the %s outbox failed; retrying", source)
                read, queued = 0, 0
            if queued:
                self.wake.set()
                with self.queued:
                    self.queued.notify_all()
            if read < FAN_OUT_BATCH:  # caught up: let the next events gather into one pass
                self.stopping.wait(self.settings.webhook_poll_seconds)

    def _claim_loop(self) -> None:
        next_prune = time.monotonic()
        while not self.stopping.is_set():
            self.wake.clear()
            with self.lock:
                free = self.settings.webhook_max_concurrency - len(self.leases)
            try:
                if free > 0:
                    self.crowded.clear()
                    self._claim_and_deliver(free)
                elif self._others_wait():
                    self.crowded.set()
                else:
                    self.crowded.clear()
            except Exception:
                logger.exception("claiming due webhook endpoints failed; retrying")
            if self.settings.webhook_retention_days and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                try:
                    self._prune()
                except Exception:
                    logger.exception("pruning old webhook deliveries failed")
            self.wake.wait(self.settings.webhook_poll_seconds)

    def _claim_and_deliver(self, limit: int) -> None:
        token = uuid.uuid4().hex
        now = utcnow()
        until = now + timedelta(seconds=self.settings.webhook_lease_seconds)

        def claim() -> list[int]:
            with self.engine.begin() as connection:
                due = repository.due_endpoints(connection, now=now, limit=limit)
                with self.lock:
                    due = [endpoint_id for endpoint_id in due if endpoint_id not in self.leases]
                return repository.claim(connection, due, token=token, now=now, until=until)

        for endpoint_id in retry_lock_conflicts(claim):
            with self.lock:
                self.leases[endpoint_id] = token
            threading.Thread(
                target=_in_background(self._deliver),
                args=(endpoint_id, token),
                name=f"webhooks-endpoint-{endpoint_id}",
                daemon=True,
            ).start()

    def _others_wait(self) -> bool:
        """Whether an endpoint nobody holds has a delivery due."""
        with self.engine.begin() as connection:
            return bool(repository.due_endpoints(connection, now=utcnow(), limit=1))

    def _prune(self) -> None:
        before = utcnow() - timedelta(days=self.settings.webhook_retention_days)
        while not self.stopping.is_set():
            with self.engine.begin() as connection:
                if repository.prune_finished(connection, before=before) == 0:
                    return

    def _release(self, endpoint_id: int, token: str) -> None:
        with self.engine.begin() as connection:
            repository.release(connection, [(endpoint_id, token)])

    def _deliver(self, endpoint_id: int, token: str) -> None:
        """Send one endpoint's due deliveries in order while its lease is ours. Once it has
        nothing pending, keep it a moment (``linger``) for the next events: a steady trickle
        then costs one read and one write per batch, not a claim and a release per event."""
        settings = self.settings
        timeout = settings.webhook_timeout_seconds
        linger = min(
            LINGER_POLLS * settings.webhook_poll_seconds, settings.webhook_lease_seconds / 4
        )
        lease_ends = time.monotonic() + settings.webhook_lease_seconds
        idle_since: float | None = None
        sender = Sender(settings.webhook_networks)  # one connection, kept while it delivers
        try:
            while True:
                with self.engine.begin() as connection:
                    batch = repository.load_batch(
                        connection, endpoint_id, token=token, now=utcnow(), limit=BATCH
                    )
                if batch.target is None or not batch.target.leased:
                    return
                if not batch.due:
                    idle_since = idle_since or time.monotonic()
                    if (
                        batch.waiting  # for a retry: nothing may be sent until then
                        or not batch.target.is_active
                        or self.stopping.is_set()
                        or self.crowded.is_set()
                        or time.monotonic() - idle_since >= linger
                    ):
                        self._release(endpoint_id, token)
                        return
                    with self.queued:
                        self.queued.wait(settings.webhook_poll_seconds)
                    if time.monotonic() + timeout + 1 <= lease_ends:
                        continue
                    # else the lease runs low: the empty record below renews it
                else:
                    idle_since = None
                outcomes: list[Outcome] = []
                for due in batch.due:
                    # Never start a POST the lease may not outlive: another worker could
                    # send the next message before this one's answer.
                    if self.stopping.is_set() or time.monotonic() + timeout + 1 > lease_ends:
                        break
                    outcome = sender.post(batch.target, due, timeout)
                    outcomes.append(outcome)
                    if not outcome.ok:
                        break
                keep = all(o.ok for o in outcomes)  # also renews a lease running low
                still_ours = record(
                    self.engine,
                    endpoint_id,
                    token,
                    outcomes,
                    policy=self.policy,
                    auto_disable=settings.webhook_auto_disable,
                    lease_seconds=settings.webhook_lease_seconds,
                    keep_lease=keep,
                )
                lease_ends = time.monotonic() + settings.webhook_lease_seconds
                if not (keep and still_ours):
                    return
                if self.crowded.is_set():  # another endpoint waits for this slot
                    self._release(endpoint_id, token)
                    return
        except Exception:
            # The lease runs out by itself; whoever takes the endpoint next sends again.
            logger.exception("delivering webhooks to endpoint %d failed", endpoint_id)
        finally:
            sender.close()
            with self.lock:
                self.leases.pop(endpoint_id, None)
            self.wake.set()
