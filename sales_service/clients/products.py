"""The one typed client sales_service uses to call products_service.

One instance per process (connection reuse), a timeout on every call, and bounded retries.
Every call it makes is idempotent by the contract (reserve by its key, commit and release by
the reservation's state), so retrying after a timeout cannot reserve or sell twice.
"""

import logging
import time
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from common.contracts import (
    RESERVATIONS_PATH,
    InsufficientStockBody,
    ReservationRead,
    ReserveRequest,
)
from common.errors import AppError, InsufficientStock, InvalidState, UpstreamUnavailable

logger = logging.getLogger(__name__)
UPSTREAM = "products_service"
RETRY_STATUSES = {502, 503, 504}


class ProductsClient:
    """Calls the reservation API; failures become domain errors that name the upstream."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(2.0, timeout_seconds)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=64),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def reserve(
        self, request: ReserveRequest, *, token: str, request_id: str = ""
    ) -> ReservationRead:
        """Hold stock for every line; InsufficientStock (with each short line) if any is short."""
        body = self._call(
            "POST", RESERVATIONS_PATH, token, request_id, json=request.model_dump(mode="json")
        )
        return ReservationRead.model_validate(body)

    def commit(self, reservation_id: int, *, token: str, request_id: str = "") -> ReservationRead:
        body = self._call("POST", f"{RESERVATIONS_PATH}/{reservation_id}/commit", token, request_id)
        return ReservationRead.model_validate(body)

    def release(self, reservation_id: int, *, token: str, request_id: str = "") -> ReservationRead:
        body = self._call(
            "POST", f"{RESERVATIONS_PATH}/{reservation_id}/release", token, request_id
        )
        return ReservationRead.model_validate(body)

    def ready(self) -> bool:
        """True when products_service answers its readiness probe."""
        try:
            return self._http.get("/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _call(
        self, method: str, path: str, token: str, request_id: str, json: Any = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        if request_id:
            headers["X-Request-ID"] = request_id
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_seconds * (3 ** (attempt - 1)))
            try:
                response = self._http.request(method, path, json=json, headers=headers)
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
            "%s %s %s %s after %d attempts", UPSTREAM, method, path, last_problem, self.retries + 1
        )
        raise UpstreamUnavailable(
            f"{UPSTREAM} {last_problem}; nothing was recorded", upstream=UPSTREAM
        )

    @staticmethod
    def _result(response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.is_success:
            return body
        code, detail = body.get("error", ""), body.get("detail", response.text[:200])
        if response.status_code == 409 and code == "insufficient_stock" and "lines" in body:
            short = InsufficientStockBody.model_validate(body)
            raise InsufficientStock(short.detail, lines=[s.model_dump() for s in short.lines])
        if response.status_code == 409:
            raise InvalidState(detail, upstream=UPSTREAM)
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


def get_products_client(request: Request) -> ProductsClient:
    client: ProductsClient = request.app.state.products_client
    return client


ProductsClientDep = Annotated[ProductsClient, Depends(get_products_client)]
