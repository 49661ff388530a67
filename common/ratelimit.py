"""The general API rate limit: requests a minute per user, and per client address for callers
without a valid token, counted in Redis so that every replica of both services shares them.

Who a request counts for is read from its bearer token alone (signature and expiry, no
database query): a person's token counts for its user (``SHOP_RATE_LIMIT_PER_MINUTE``), a
service's own token is not limited (the person behind the call was counted where it came
in), and a request with no valid token counts for its client address
(``SHOP_RATE_LIMIT_ANONYMOUS_PER_MINUTE``; behind a proxy, set SHOP_FORWARDED_ALLOW_IPS so
that address is the client's, not the proxy's). The probes (/health, /ready), the
dashboard's static files and CORS preflights are never limited.

The algorithm is GCRA (a leaky bucket kept as one timestamp per key): a caller may spend the
whole minute's budget at once, after which requests pass at the steady rate, one every
60/limit seconds. One Lua script checks and updates the key atomically in one round trip,
on Redis's own clock. A refused request gets 429 with ``Retry-After``; every limited answer
carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds
until the whole budget is back).

Without ``SHOP_REDIS_URL`` each process counts on its own, in memory: right for the
single-process local mode, and per replica otherwise. When Redis fails, requests are served
unlimited (fail open) rather than refused: a warning is logged, the failure is counted in
``rate_limit_backend_errors_total``, and Redis is left alone for a few seconds so that a dead
one does not cost every request a timeout.
"""

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.auth.security import decode_access_token, decode_service_token
from common.errors import TooManyRequests
from common.settings import CommonSettings

logger = logging.getLogger(__name__)

UNLIMITED_PATHS = frozenset({"/health", "/ready"})
# The dashboard's static files (products_service/dashboard.py): one page load fetches about
# twenty of them before it can log in, and each is a file read, not an API call.
UNLIMITED_PREFIXES = ("/dashboard/",)
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
WINDOW_SECONDS = 60
# Redis answers in a millisecond when well; a stuck one must not hold requests for long.
REDIS_TIMEOUT_SECONDS = 0.25
# After a failure, requests go unlimited for this long before Redis is tried again.
REDIS_PAUSE_AFTER_FAILURE_SECONDS = 5.0

# GCRA on Redis's clock, in microseconds. KEYS[1]: the key; ARGV: the window, the limit.
# Returns {allowed, remaining, microseconds until the budget is full, until a retry passes}.
_GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local interval = window / limit
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = (tat - now) + interval  -- in this order: tat + interval may round to tat
if wait > window then
  return {0, 0, math.ceil(tat - now), math.ceil(wait - window)}
end
local ttl = math.max(1, math.ceil(wait / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl)
return {1, math.floor((window - wait) / interval + 1e-6), math.ceil(wait), 0}
"""


class RateLimited(TooManyRequests):
    code = "rate_limited"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the limiter decided for one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float  # until the whole budget is back
    retry_after_seconds: float  # until the next request would pass (0 when allowed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        values = (self.limit, self.remaining, math.ceil(self.reset_seconds))
        return [
            (name.lower().encode(), str(value).encode())
            for name, value in zip(RATE_LIMIT_HEADERS, values, strict=True)
        ]


class RateLimitBackend(Protocol):
    async def hit(self, key: str, limit: int) -> Decision | None:
        """Count one request against ``key``; None when the count cannot be kept."""

    async def close(self) -> None:
        """Let go of connections made from the running event loop."""


class LocalRateLimitBackend:
    """GCRA in this process's memory: no other process sees its counts."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._next_purge = 0.0

    async def hit(self, key: str, limit: int) -> Decision:
        # No await in here: on the event loop this is atomic.
        now = time.monotonic()
        if now >= self._next_purge:  # a key whose budget is full again is as good as none
            self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
            self._next_purge = now + WINDOW_SECONDS
        interval = WINDOW_SECONDS / limit
        tat = max(self._tats.get(key, now), now)
        wait = (tat - now) + interval
        if wait > WINDOW_SECONDS:
            return Decision(False, limit, 0, tat - now, wait - WINDOW_SECONDS)
        self._tats[key] = tat + interval
        remaining = math.floor((WINDOW_SECONDS - wait) / interval + 1e-6)
        return Decision(True, limit, remaining, wait, 0.0)

    async def close(self) -> None:
        pass


class RedisRateLimitBackend:
    """GCRA in Redis, shared by every process that uses the same Redis and key prefix."""

    def __init__(self, url: str, *, on_error: Callable[[], None]) -> None:
        self._url = url
        self._on_error = on_error
        # A connection belongs to the event loop that made it (tests run apps on several).
        self._scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncScript] = (
            weakref.WeakKeyDictionary()
        )
        self._paused_until = 0.0
        Redis.from_url(url)  # a malformed URL fails at start-up, not at the first request

    def _script(self) -> AsyncScript:
        loop = asyncio.get_running_loop()
        script = self._scripts.get(loop)
        if script is None:
            client = Redis.from_url(
                self._url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                # One immediate retry: a pooled connection Redis has since closed reconnects.
                retry=Retry(NoBackoff(), 1),
            )
            script = self._scripts[loop] = client.register_script(_GCRA_SCRIPT)
        return script

    async def hit(self, key: str, limit: int) -> Decision | None:
        if time.monotonic() < self._paused_until:
            return None
        try:
            allowed, remaining, reset_us, retry_us = await self._script()(
                keys=[key], args=[WINDOW_SECONDS * 1_000_000, limit]
            )
        except Exception as exc:  # whatever Redis does, the request is served
            self._paused_until = time.monotonic() + REDIS_PAUSE_AFTER_FAILURE_SECONDS
            self._on_error()
            logger.warning(
                "rate limit: Redis failed (%s: %s); requests are not limited for %.0f s",
                type(exc).__name__,
                exc,
                REDIS_PAUSE_AFTER_FAILURE_SECONDS,
            )
            return None
        return Decision(
            bool(allowed), limit, int(remaining), int(reset_us) / 1e6, int(retry_us) / 1e6
        )

    async def close(self) -> None:
        script = self._scripts.pop(asyncio.get_running_loop(), None)
        if script is not None:
            await script.registered_client.aclose()


class RateLimitMiddleware:
    """Counts each request for its user or client address, and refuses it over the limit."""

    def __init__(
        self, app: ASGIApp, *, backend: RateLimitBackend, settings: CommonSettings, state: State
    ) -> None:
        self.app = app
        self.backend = backend
        self.settings = settings
        self.state = state  # the app's, for its metrics (made after this is installed)
        self.key_prefix = settings.rate_limit_key_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        subject = self._subject(scope) if scope["type"] == "http" else None
        if subject is None:
            await self.app(scope, receive, send)
            return
        kind, key, limit = subject
        decision = await self.backend.hit(key, limit)
        if decision is None:  # the count could not be kept: serve unlimited
            await self.app(scope, receive, send)
            return
        headers = decision.headers()
        if not decision.allowed:
            await self._refuse(kind, decision, headers, scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _subject(self, scope: Scope) -> tuple[str, str, int] | None:
        """What the request counts for (kind, key, limit), or None when it is not limited."""
        if scope["path"] in UNLIMITED_PATHS or scope["path"].startswith(UNLIMITED_PREFIXES):
            return None
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"access-control-request-method" and scope["method"] == "OPTIONS":
                return None  # a CORS preflight
        if authorization is not None:
            scheme, _, token = authorization.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                token = token.strip()
                claims = decode_access_token(token, self.settings)
                if claims is not None:
                    limit = self.settings.rate_limit_per_minute
                    key = f"{self.key_prefix}:user:{claims.user_id}"
                    return ("user", key, limit) if limit else None
                if decode_service_token(token, self.settings) is not None:
                    return None
        limit = self.settings.rate_limit_anonymous_per_minute
        if not limit:
            return None
        client = scope.get("client")
        address = client[0] if client else "unknown"
        return "client", f"{self.key_prefix}:client:{address}", limit

    async def _refuse(
        self,
        kind: str,
        decision: Decision,
        headers: list[tuple[bytes, bytes]],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        metrics = getattr(self.state, "metrics", None)
        if metrics is not None:
            metrics.rate_limited.labels(kind).inc()
        retry_after = max(1, math.ceil(decision.retry_after_seconds))
        who = "user" if kind == "user" else "client address without a valid token"
        error = RateLimited(
            f"Too many requests: at most {decision.limit} a minute per {who}; "
            f"retry in {retry_after} s",
            retry_after=retry_after,
        )
        response = JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)
        response.raw_headers.extend(headers)
        await response(scope, receive, send)

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def send_after_closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.backend.close()
            await send(message)

        return send_after_closing


def install_rate_limit(app: FastAPI, settings: CommonSettings) -> None:
    """Limit the app's requests per user and per anonymous client address (see the module).

    Install it inside CORS, so that a refusal carries the CORS headers a dashboard needs to
    read it, and a preflight is answered before it arrives here.
    """
    if not (settings.rate_limit_per_minute or settings.rate_limit_anonymous_per_minute):
        return
    state = app.state

    def count_error() -> None:
        metrics = getattr(state, "metrics", None)
        if metrics is not None:
            metrics.rate_limit_backend_errors.inc()

    backend: RateLimitBackend
    if settings.redis_url:
        backend = RedisRateLimitBackend(settings.redis_url, on_error=count_error)
    else:
        backend = LocalRateLimitBackend()
    app.state.rate_limit_backend = backend
    app.add_middleware(RateLimitMiddleware, backend=backend, settings=settings, state=state)
