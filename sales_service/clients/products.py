"""The one typed client sales_service uses to call products_service.

One instance per process (connection reuse, at most ``max_connections`` calls in flight), a
timeout on every attempt and a time budget on every call, and bounded retries. Every call it
makes is idempotent by the contract (a sale's stock taken or given back by the attempt's
key, stock returns by their Idempotency-Key), so retrying after a timeout cannot sell or
return twice.

Time bounds: one attempt waits at most ``timeout_seconds`` (connecting at most 2 s of
that); a call, retries and back-off included, never takes longer than ``budget_seconds``
(default twice the timeout): a later attempt only gets what is left of it, and none is made
when too little is.
"""

import logging
import time
from typing import Annotated, Any, TypeVar

import httpx
from fastapi import Depends, Request
from pydantic import ValidationError

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

logger = logging.getLogger(__name__)
UPSTREAM = "products_service"
RETRY_STATUSES = {502, 503, 504}
CONNECT_TIMEOUT_SECONDS = 2.0
MIN_ATTEMPT_SECONDS = 0.05  # less than this left of the budget: do not start another attempt
# Calls in flight from one process at most; more wait for a connection (within the attempt's
# timeout). A bulkhead: a burst of sales queues here instead of piling onto products_service
# beyond what its workers and database pool can serve at once.
MAX_CONNECTIONS = 16


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
        transport: httpx.BaseTransport | None = None,
        credential: ServiceCredential | None = None,
    ) -> None:
        self.credential = credential
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.budget_seconds = budget_seconds if budget_seconds is not None else 2 * timeout_seconds
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout(timeout_seconds),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    @staticmethod
    def _timeout(seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT_SECONDS, seconds))

    def close(self) -> None:
        self._http.close()

    def take_sale_stock(self, body: SaleStockTake, *, request_id: str = "") -> SaleStockRead:
        """Take every line's stock under the attempt's key (as sales_service itself)."""
        answer = self._call(
            "POST",
            SALE_STOCK_PATH,
            self._service_token(),
            request_id,
            json=body.model_dump(mode="json"),
        )
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
            "POST",
            RETURNS_PATH,
            token,
            request_id,
            json=body.model_dump(mode="json"),
            headers={"Idempotency-Key": key},
        )
        return _parse(StockChangeRead, answer)

    def ready(self) -> bool:
        """True when products_service answers its readiness probe."""
        try:
            return self._http.get("/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _call(
        self,
        method: str,
        path: str,
        token: str,
        request_id: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
        budget_seconds: float | None = None,
    ) -> dict[str, Any]:
        """One call, retried on transport errors, timeouts and 502/503/504 within the budget
        (the client's, or a shorter one for this call)."""
        headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
        if request_id:
            headers["X-Request-ID"] = request_id
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
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    headers=headers,
                    timeout=self._timeout(min(self.timeout_seconds, left)),
                )
            except httpx.TimeoutException:
                last_problem = "did not answer in time"
                continue
            except httpx.TransportError as exc:
                last_problem = f"is unreachable ({type(exc).__name__})"
                continue
            if response.status_code in RETRY_STATUSES:
                last_problem = f"answered {response.status_code}"
                continue
            return self._result(response)
        logger.warning(
            "%s %s %s %s after %d attempts", UPSTREAM, method, path, last_problem, attempts
        )
        raise UpstreamUnavailable(f"{UPSTREAM} {last_problem}", upstream=UPSTREAM)

    @staticmethod
    def _result(response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.is_success:
            return body
        code, detail = body.get("error", ""), body.get("detail", response.text[:200])
        if response.status_code == 409 and code == "insufficient_stock" and "lines" in body:
            short = _parse(InsufficientStockBody, body)
            raise InsufficientStock(short.detail, lines=[s.model_dump() for s in short.lines])
        if response.status_code == 409:
            raise InvalidState(
                detail,
                upstream=UPSTREAM,
                **{k: v for k, v in body.items() if k not in ("error", "detail")},
            )
        if response.status_code in (401, 403):
            error = AppError(detail, upstream=UPSTREAM)
            error.status_code, error.code = response.status_code, code or "forbidden"
            raise error
        if 400 <= response.status_code < 500:
            error = AppError(
                detail,
                upstream=UPSTREAM,
                **{k: v for k, v in body.items() if k not in ("error", "detail")},
            )
            error.status_code, error.code = response.status_code, code or "bad_request"
            raise error
        raise UpstreamUnavailable(f"{UPSTREAM} answered {response.status_code}", upstream=UPSTREAM)


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
