"""The one typed client sales_service uses to call products_service.

One instance per process (connection reuse, at most ``max_connections`` calls in flight), a
timeout on every attempt and a time budget on every call, and bounded retries. Every call it
makes is idempotent by the contract (a sale's stock taken or given back by the attempt's
key, stock returns by their Idempotency-Key), so retrying after a timeout cannot sell or
return twice.

Time bounds: one attempt waits at most ``timeout_seconds`` (connecting at most 2 s of
that) for each step (a free connection, connecting, each send and each read); a call,
retries and back-off included, never takes longer than ``budget_seconds`` (default twice
the timeout): a later attempt only gets what is left of it, and none is made when too
little is.

HTTP goes over connections kept between calls (``Connections``, of
``common.kept_connections``), not httpx: a call on every sale, it took 15% of
sales_service's CPU through httpx, most of it the client's machinery (cookies, redirects,
auth, its pool), and a third of that through http.client.
"""

import http.client
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from common.auth.security import ServiceCredential
from common.contracts import (
    RETURNS_PATH,
    SALE_STOCK_PATH,
    InsufficientStockBody,
    ReturnCreate,
    SaleStockRead,
    SaleStockTake,
    StockChangeRead,
)
from common.errors import AppError, InsufficientStock, InvalidState, UpstreamUnavailable
from common.kept_connections import Answer, KeptConnection, default_port

logger = logging.getLogger(__name__)
UPSTREAM = "products_service"
RETRY_STATUSES = {502, 503, 504}
CONNECT_TIMEOUT_SECONDS = 2.0
MIN_ATTEMPT_SECONDS = 0.05  # less than this left of the budget: do not start another attempt
# Calls in flight from one process at most; more wait for a connection (within the attempt's
# timeout). A bulkhead: a burst of sales queues here instead of piling onto products_service
# beyond what its workers and database pool can serve at once.
MAX_CONNECTIONS = 16


class Connections:
    """Connections to one origin, kept between calls, at most ``size`` in use at once (more
    callers wait for one, each within its own timeout): a bulkhead, so that a burst queues
    here instead of piling onto the upstream beyond what its workers can serve at once."""

    def __init__(self, scheme: str, host: str, port: int | None, size: int) -> None:
        self.scheme, self.host = scheme, host
        self.port = port or default_port(scheme)
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[KeptConnection] = []  # newest last
        self._closed = False

    def exchange(
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        timeout: float,
        connect_timeout: float,
    ) -> Answer:
        """Send one request and read its answer. Raises ``TimeoutError`` when a step took
        longer than ``timeout`` (``connect_timeout`` to connect), another ``OSError`` or an
        ``http.client.HTTPException`` when the connection failed."""
        if not self._free.acquire(timeout=timeout):
            raise TimeoutError("no connection free in time")
        try:
            connection = self._kept(timeout)
            if connection is not None:
                try:
                    return self._send(connection, method, target, body, headers)
                except (ConnectionResetError, BrokenPipeError, http.client.BadStatusLine):
                    pass  # closed by the upstream as it was sent: once more, on a new one
            connection = KeptConnection(self.scheme, self.host, self.port, timeout=connect_timeout)
            connection.settimeout(timeout)
            return self._send(connection, method, target, body, headers)
        finally:
            self._free.release()

    def _kept(self, timeout: float) -> KeptConnection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if connection.reusable():
                connection.settimeout(timeout)
                return connection
            connection.close()

    def _send(
        self,
        connection: KeptConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> Answer:
        answer = connection.request(method, target, headers, body or b"")
        if connection.sock is None:  # failed, or the upstream said it closes
            return answer
        with self._lock:
            if self._closed:
                connection.close()
            else:
                self._idle.append(connection)
        return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class ProductsClient:
    """Calls products_service's stock API; failures become domain errors that name the upstream."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.1,
        budget_seconds: float | None = None,
        max_connections: int = MAX_CONNECTIONS,
        credential: ServiceCredential | None = None,
    ) -> None:
        self.credential = credential
        self.base_url = base_url.rstrip("/")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._prefix = url.path
        self._connections = Connections(url.scheme, url.hostname, url.port, max_connections)
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.budget_seconds = budget_seconds if budget_seconds is not None else 2 * timeout_seconds

    def close(self) -> None:
        self._connections.close()

    def take_sale_stock(self, body: SaleStockTake, *, request_id: str = "") -> SaleStockRead:
        """Take every line's stock under the attempt's key (as sales_service itself)."""
        answer = self._call("POST", SALE_STOCK_PATH, self._service_token(), request_id, body)
        return _parse(SaleStockRead, answer)

    def return_sale_stock(
        self, key: str, *, request_id: str = "", budget_seconds: float | None = None
    ) -> SaleStockRead:
        """Give back what was taken under the key, or void it (idempotent)."""
        answer = self._call(
            "POST",
            f"{SALE_STOCK_PATH}/{key}/return",
            self._service_token(),
            request_id,
            budget_seconds=budget_seconds,
        )
        return _parse(SaleStockRead, answer)

    def _service_token(self) -> str:
        if self.credential is None:
            raise RuntimeError("this client was built without a service credential")
        return self.credential.token()

    def return_stock(
        self, body: ReturnCreate, *, key: str, token: str, request_id: str = ""
    ) -> StockChangeRead:
        """Put units back on a shelf as one ``return`` movement; once per key, however retried."""
        answer = self._call(
            "POST", RETURNS_PATH, token, request_id, body, headers={"Idempotency-Key": key}
        )
        return _parse(StockChangeRead, answer)

    def ready(self) -> bool:
        """True when products_service answers its readiness probe."""
        try:
            answer = self._connections.exchange(
                "GET", f"{self._prefix}/ready", None, {}, timeout=2.0, connect_timeout=2.0
            )
        except (OSError, http.client.HTTPException):
            return False
        return answer.status == 200

    def _call(
        self,
        method: str,
        path: str,
        token: str,
        request_id: str,
        body: BaseModel | None = None,
        headers: dict[str, str] | None = None,
        budget_seconds: float | None = None,
    ) -> dict[str, Any]:
        """One call, retried on transport errors, timeouts and 502/503/504 within the budget
        (the client's, or a shorter one for this call)."""
        headers = {
            **(headers or {}),
            "Authorization": f"Bearer {token}",
            "Accept-Encoding": "identity",
        }
        if request_id:
            headers["X-Request-ID"] = request_id
        content = None
        if body is not None:
            content = body.model_dump_json().encode()
            headers["Content-Type"] = "application/json"
        deadline = time.monotonic() + (budget_seconds or self.budget_seconds)
        last_problem = "was not called (no time left)"
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                pause = self.backoff_seconds * (3 ** (attempt - 1))
                if deadline - time.monotonic() < pause + MIN_ATTEMPT_SECONDS:
                    break
                time.sleep(pause)
            left = deadline - time.monotonic()
            if left < MIN_ATTEMPT_SECONDS:
                break
            attempts += 1
            timeout = min(self.timeout_seconds, left)
            started = time.perf_counter()
            try:
                answer = self._connections.exchange(
                    method,
                    self._prefix + path,
                    content,
                    headers,
                    timeout=timeout,
                    connect_timeout=min(CONNECT_TIMEOUT_SECONDS, timeout),
                )
            except TimeoutError:
                last_problem = "did not answer in time"
                continue
            except (OSError, http.client.HTTPException) as exc:
                last_problem = f"is unreachable ({type(exc).__name__})"
                continue
            logger.info(  # one line per call, with the request's id (as the access lines)
                "%s %s %s answered %d in %.1f ms",
                UPSTREAM,
                method,
                path,
                answer.status,
                (time.perf_counter() - started) * 1000,
            )
            if answer.status in RETRY_STATUSES:
                last_problem = f"answered {answer.status}"
                continue
            return self._result(answer)
        logger.warning(
            "%s %s %s %s after %d attempts", UPSTREAM, method, path, last_problem, attempts
        )
        raise UpstreamUnavailable(f"{UPSTREAM} {last_problem}", upstream=UPSTREAM)

    @staticmethod
    def _result(answer: Answer) -> dict[str, Any]:
        try:
            body: dict[str, Any] = json.loads(answer.body)
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if answer.is_success:
            return body
        code, detail = body.get("error", ""), body.get("detail", answer.text()[:200])
        if answer.status == 409 and code == "insufficient_stock" and "lines" in body:
            short = _parse(InsufficientStockBody, body)
            raise InsufficientStock(short.detail, lines=[s.model_dump() for s in short.lines])
        if answer.status == 409:
            raise InvalidState(
                detail,
                upstream=UPSTREAM,
                **{k: v for k, v in body.items() if k not in ("error", "detail")},
            )
        if answer.status in (401, 403):
            error = AppError(detail, upstream=UPSTREAM)
            error.status_code, error.code = answer.status, code or "forbidden"
            raise error
        if 400 <= answer.status < 500:
            error = AppError(
                detail,
                upstream=UPSTREAM,
                **{k: v for k, v in body.items() if k not in ("error", "detail")},
            )
            error.status_code, error.code = answer.status, code or "bad_request"
            raise error
        raise UpstreamUnavailable(f"{UPSTREAM} answered {answer.status}", upstream=UPSTREAM)


Model = TypeVar("Model", InsufficientStockBody, StockChangeRead, SaleStockRead)


def _parse(model: type[Model], body: dict[str, Any]) -> Model:
    """The answer as the contract says it is; anything else is the upstream's fault (503)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        logger.error("%s answered outside the contract: %s", UPSTREAM, exc)
        raise UpstreamUnavailable(
            f"{UPSTREAM} answered outside the contract", upstream=UPSTREAM
        ) from exc


async def get_products_client(request: Request) -> ProductsClient:
    client: ProductsClient = request.app.state.products_client
    return client


ProductsClientDep = Annotated[ProductsClient, Depends(get_products_client)]
