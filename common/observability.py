"""Request ids (passed on from service to service), structured logs and Prometheus metrics.

Every request gets an id: the caller's ``X-Request-ID`` when it is a sane token, a fresh one
otherwise. It is kept in a context variable for the request's lifetime (so log lines and
calls to other services can carry it) and echoed in the response's ``X-Request-ID`` header.

Logs are one JSON object per line (``SHOP_LOG_FORMAT=text`` for a human-readable line
instead; ``SHOP_LOG_LEVEL`` sets the level). Both variables are read here, not through the
settings classes, because logging is configured before and apart from any app's settings.

Metrics live in one registry per app, served at ``/metrics``. With several uvicorn workers
each process counts on its own, so run one worker per container and scale with replicas.
They show routes, error rates and login outcomes, so /metrics is not for everyone: with
``SHOP_METRICS_TOKEN`` set it answers only to that bearer token, without one it is open in
development and test and refused in production, and ``SHOP_METRICS_ENABLED=false`` removes it.
"""

import hmac
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import Forbidden, Unauthorized, error_responses
from common.settings import CommonSettings

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from callers as is; anything else (too long, spaces, control characters that
# could forge log lines) is replaced by a fresh id.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Probes and scrapes arrive every few seconds from the orchestrator: counted in the metrics,
# logged only at DEBUG so they do not drown the access log.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
UNMATCHED_ROUTE = "<unmatched>"

_request_id: ContextVar[str] = ContextVar("request_id", default="")
access_logger = logging.getLogger("shop.access")


def current_request_id() -> str:
    """The id of the request being served, or "" outside a request."""
    return _request_id.get()


def new_request_id() -> str:
    """A fresh request id (32 hex characters)."""
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """The caller's id when it is a safe token, else a fresh one."""
    if incoming and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_request_id()


# --- logging ---------------------------------------------------------------------------


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or None
        return True


class _UtcJsonFormatter(JsonFormatter):
    """JSON lines whose time is ISO 8601 in UTC with milliseconds."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class _CurrentStderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def log_format() -> str:
    """``json`` (default) or ``text``, from SHOP_LOG_FORMAT."""
    value = os.environ.get("SHOP_LOG_FORMAT", "json").strip().lower()
    return value if value in ("json", "text") else "json"


def log_level() -> int:
    """The root level from SHOP_LOG_LEVEL (a name such as DEBUG or WARNING); INFO otherwise."""
    name = os.environ.get("SHOP_LOG_LEVEL", "INFO").strip().upper()
    level = logging.getLevelNamesMapping().get(name)
    return level if level is not None else logging.INFO


def build_formatter(fmt: str) -> logging.Formatter:
    if fmt == "text":
        return logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
        )
    return _UtcJsonFormatter(
        ["asctime", "levelname", "name", "message", "request_id"],
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        # uvicorn adds a colourised copy of each message; one copy is enough.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


_HANDLER_MARK = "_shop_observability"


def configure_logging() -> None:
    """Send app, uvicorn and access logs through one handler in the configured format.

    Idempotent: calling it again (one call per app built) replaces its own handler only,
    leaving any handler someone else installed (e.g. pytest's capture) alone.
    """
    handler = _CurrentStderrHandler()
    handler.setFormatter(build_formatter(log_format()))
    handler.addFilter(_RequestIdFilter())
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log_level())

    # uvicorn's own lines (start-up, errors) go through the root handler above.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    # uvicorn's access line is replaced by shop.access, which also has the request id, the
    # route and the duration.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers = [logging.NullHandler()]
    uvicorn_access.propagate = False


# --- metrics ---------------------------------------------------------------------------


class HttpMetrics:
    """Request count and latency by method, route template and status, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from receiving a request to the end of its answer, by method and route.",
            ["method", "route"],
            registry=self.registry,
        )
        # Kept by common/ratelimit.py; the 429s themselves are in http_requests too.
        self.rate_limited = Counter(
            "rate_limited_requests",
            "Requests the API rate limit refused, by what was counted (user or client).",
            ["scope"],
            registry=self.registry,
        )
        self.rate_limit_backend_errors = Counter(
            "rate_limit_backend_errors",
            "Times the rate limit's Redis failed (those requests were served unlimited).",
            registry=self.registry,
        )

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The matched route's full path template (``/api/v1/products/{product_id}``), so the
    metrics have one series per route rather than one per id.

    A route inside an included router may know only its own part of the template
    (``/products/{product_id}``); the prefix in front of it is taken from the request path,
    which has no parameters there.
    """
    own = getattr(scope.get("route"), "path", None)
    if not isinstance(own, str):
        return UNMATCHED_ROUTE
    if ":path}" in own:  # a parameter spanning segments: its prefix cannot be counted off
        return own or "/"
    own_segments = [s for s in own.split("/") if s]
    path_segments = [s for s in str(scope.get("path", "")).split("/") if s]
    if len(own_segments) > len(path_segments):
        return own or "/"
    prefix = "".join(f"/{s}" for s in path_segments[: len(path_segments) - len(own_segments)])
    if own and not own.startswith("/"):
        own = f"/{own}"
    return f"{prefix}{own}" or "/"


class RequestObservabilityMiddleware:
    """Gives each request its id, echoes it, then logs and counts the answer."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        token: Token[str] | None = _request_id.set(request_id)
        status = 500  # what the caller gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            # The id stays set: the server logs the traceback after this returns, in this
            # request's own task, and that line should name the request too.
            token = None
            raise
        finally:
            seconds = time.perf_counter() - started
            method, path = scope["method"], scope["path"]
            self.metrics.observe(
                method=method, route=route_template(scope), status=status, seconds=seconds
            )
            access_logger.log(
                logging.DEBUG if path in QUIET_PATHS else logging.INFO,
                "%s %s -> %d in %.1f ms",
                method,
                path,
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            if token is not None:
                _request_id.reset(token)


def metrics_access(settings: CommonSettings) -> Callable[[Request], None]:
    """The check /metrics makes of a caller: the bearer token SHOP_METRICS_TOKEN when one is
    set; without one, none in development and test, and a refusal in production (the
    metrics show routes, error rates and login outcomes to whoever asks)."""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if expected:
        expected_bytes = expected.encode()

        def require_token(request: Request) -> None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            # compare_digest: the time taken does not tell how much of a guess was right.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected_bytes
            ):
                raise Unauthorized("/metrics needs Authorization: Bearer <SHOP_METRICS_TOKEN>")

        return require_token
    if settings.environment == "production":

        def refuse(_request: Request) -> None:
            raise Forbidden("/metrics is closed in production until SHOP_METRICS_TOKEN is set")

        return refuse
    return lambda _request: None


def install_observability(app: FastAPI, settings: CommonSettings) -> None:
    """Request ids, the access log and /metrics for this app (logging itself is global).

    /metrics is left out with SHOP_METRICS_ENABLED=false; see metrics_access for who may
    read it.
    """
    metrics = HttpMetrics()
    app.state.metrics = metrics
    app.add_middleware(RequestObservabilityMiddleware, metrics=metrics)
    if not settings.metrics_enabled:
        return
    check_access = metrics_access(settings)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics of this process",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"},
            **error_responses(401, 403),
        },
    )
    def get_metrics(request: Request) -> Response:
        """Request counts and latencies by route and status, plus process metrics, in the
        Prometheus text format. With SHOP_METRICS_TOKEN set, only to
        `Authorization: Bearer <that token>`; without it, refused in production."""
        check_access(request)
        own: HttpMetrics = request.app.state.metrics
        return Response(own.exposition(), media_type=CONTENT_TYPE_LATEST)
