"""The general API rate limit: per user and per anonymous client address, shared through
Redis by every replica, failing open when Redis does, and never in the way of probes,
preflights or one service calling another."""

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from common.auth.security import create_service_token
from common.models import Role, User
from common.ratelimit import LocalRateLimitBackend, RedisRateLimitBackend
from common.settings import ProductsSettings
from tests.conftest import LiveServer, free_port, service_env

PRODUCTS = "/api/v1/products"


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The Redis of SHOP_TEST_REDIS_URL (default the local one); the tests that need it skip
    where none answers."""
    url = os.environ.get("SHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {url}: {exc}")
    return url


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test only (parallel runs share the Redis), deleted afterwards."""
    prefix = f"shop-test:{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def limited_app(settings: ProductsSettings, **limits: Any) -> Any:
    """products_service as deployed, with the limits given (the suite's are off)."""
    from products_service.main import create_app

    return create_app(settings.model_copy(update=limits))


def _counter(client: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_a_user_over_the_limit_gets_429_in_the_error_shape_and_another_user_still_passes(
    settings: ProductsSettings,
    redis_url: str,
    key_prefix: str,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
) -> None:
    app = limited_app(
        settings, redis_url=redis_url, rate_limit_key_prefix=key_prefix, rate_limit_per_minute=3
    )
    with TestClient(app) as api:
        remaining = []
        for _ in range(3):
            answer = api.get(PRODUCTS, headers=manager_headers)
            assert answer.status_code == 200
            assert answer.headers["X-RateLimit-Limit"] == "3"
            remaining.append(answer.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]

        refused = api.get(PRODUCTS, headers=manager_headers)
        assert refused.status_code == 429
        body = refused.json()
        assert body["error"] == "rate_limited"
        assert "3 a minute per user" in body["detail"]
        # One request a minute / 3 comes back every 20 s.
        assert 1 <= body["retry_after_seconds"] <= 20
        assert refused.headers["Retry-After"] == str(body["retry_after_seconds"])
        assert refused.headers["X-RateLimit-Remaining"] == "0"

        assert api.get(PRODUCTS, headers=viewer_headers).status_code == 200
        assert _counter(api, "rate_limited_requests_total", scope="user") == 1


def test_two_replicas_sharing_redis_share_each_users_count(
    settings: ProductsSettings, redis_url: str, key_prefix: str, manager_headers: dict[str, str]
) -> None:
    limits = {"redis_url": redis_url, "rate_limit_key_prefix": key_prefix}
    one = limited_app(settings, rate_limit_per_minute=4, **limits)
    two = limited_app(settings, rate_limit_per_minute=4, **limits)
    with TestClient(one) as first, TestClient(two) as second:
        assert first.get(PRODUCTS, headers=manager_headers).status_code == 200
        assert second.get(PRODUCTS, headers=manager_headers).status_code == 200
        assert first.get(PRODUCTS, headers=manager_headers).status_code == 200
        last = second.get(PRODUCTS, headers=manager_headers)
        assert last.status_code == 200 and last.headers["X-RateLimit-Remaining"] == "0"
        assert first.get(PRODUCTS, headers=manager_headers).status_code == 429
        assert second.get(PRODUCTS, headers=manager_headers).status_code == 429


def test_callers_without_a_valid_token_are_limited_per_client_address(
    settings: ProductsSettings, redis_url: str, key_prefix: str
) -> None:
    app = limited_app(
        settings,
        redis_url=redis_url,
        rate_limit_key_prefix=key_prefix,
        rate_limit_anonymous_per_minute=2,
    )
    with (
        TestClient(app, client=("198.51.100.7", 40000)) as one,
        TestClient(app, client=("198.51.100.8", 40000)) as other,
    ):
        assert one.get(PRODUCTS).status_code == 401
        # A forged or expired token is no token: it counts for the address too.
        assert one.get(PRODUCTS, headers={"Authorization": "Bearer not.a.token"}).status_code == 401
        refused = one.post("/api/v1/auth/login", json={"email": "x@example.com", "password": "y"})
        assert refused.status_code == 429
        assert "client address" in refused.json()["detail"]
        assert other.get(PRODUCTS).status_code == 401


def test_probes_and_cors_preflights_are_never_limited(
    settings: ProductsSettings, redis_url: str, key_prefix: str
) -> None:
    app = limited_app(
        settings,
        redis_url=redis_url,
        rate_limit_key_prefix=key_prefix,
        rate_limit_anonymous_per_minute=1,
    )
    preflight = {
        "Origin": settings.cors_origins[0],
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with TestClient(app) as api:
        for _ in range(5):
            assert api.get("/health").status_code == 200
            assert api.get("/ready").status_code == 200
            assert api.options("/api/v1/auth/login", headers=preflight).status_code == 200
        assert api.get(PRODUCTS).status_code == 401
        refused = api.get(PRODUCTS, headers={"Origin": settings.cors_origins[0]})
        assert refused.status_code == 429
        # The dashboard can read the refusal: it carries CORS headers and exposes its own.
        assert refused.headers["access-control-allow-origin"] == settings.cors_origins[0]
        exposed = refused.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed and "x-ratelimit-remaining" in exposed


def test_a_services_own_token_is_not_limited(
    settings: ProductsSettings, redis_url: str, key_prefix: str
) -> None:
    app = limited_app(
        settings,
        redis_url=redis_url,
        rate_limit_key_prefix=key_prefix,
        rate_limit_per_minute=1,
        rate_limit_anonymous_per_minute=1,
    )
    token, _ = create_service_token("sales_service", settings)
    with TestClient(app) as api:
        for _ in range(5):
            answer = api.get(PRODUCTS, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code != 429
            assert "X-RateLimit-Limit" not in answer.headers


def test_requests_are_served_unlimited_while_redis_is_down(
    settings: ProductsSettings, manager_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    app = limited_app(settings, redis_url=nothing_listens, rate_limit_per_minute=1)
    with TestClient(app) as api, caplog.at_level(logging.WARNING, logger="common.ratelimit"):
        started = time.monotonic()
        for _ in range(5):
            answer = api.get(PRODUCTS, headers=manager_headers)
            assert answer.status_code == 200
            assert "X-RateLimit-Limit" not in answer.headers
        # One failed attempt, then Redis is left alone for a while: no timeout per request.
        assert time.monotonic() - started < 5
        assert _counter(api, "rate_limit_backend_errors_total") == 1
    warnings = [r for r in caplog.records if r.name == "common.ratelimit"]
    assert len(warnings) == 1 and "not limited" in warnings[0].getMessage()


def test_without_redis_each_process_counts_in_memory(
    settings: ProductsSettings, manager_headers: dict[str, str]
) -> None:
    app = limited_app(settings, redis_url=None, rate_limit_per_minute=2)
    with TestClient(app) as api:
        assert api.get(PRODUCTS, headers=manager_headers).status_code == 200
        assert api.get(PRODUCTS, headers=manager_headers).status_code == 200
        refused = api.get(PRODUCTS, headers=manager_headers)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"


def test_zero_turns_the_limit_off(
    settings: ProductsSettings, manager_headers: dict[str, str]
) -> None:
    app = limited_app(settings, rate_limit_per_minute=0, rate_limit_anonymous_per_minute=0)
    with TestClient(app) as api:
        for _ in range(3):
            answer = api.get(PRODUCTS, headers=manager_headers)
            assert answer.status_code == 200 and "X-RateLimit-Limit" not in answer.headers
    assert not hasattr(app.state, "rate_limit_backend")


@pytest.mark.parametrize("backend_name", ["redis", "local"])
def test_the_budget_refills_at_the_steady_rate_the_same_in_redis_and_in_memory(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    """60 a minute: 60 at once, then one a second."""

    async def run() -> list[Any]:
        if backend_name == "redis":
            url = request.getfixturevalue("redis_url")
            key = f"{request.getfixturevalue('key_prefix')}:user:1"
            backend: Any = RedisRateLimitBackend(url, on_error=lambda: None)
        else:
            key, backend = "user:1", LocalRateLimitBackend()
        decisions = [await backend.hit(key, 60) for _ in range(61)]
        await asyncio.sleep(1.1)
        decisions.append(await backend.hit(key, 60))
        await backend.close()
        return decisions

    decisions = asyncio.run(run())
    outcome = [(d.allowed, d.remaining) for d in decisions]
    assert outcome[:3] == [(True, 59), (True, 58), (True, 57)]
    assert outcome[59:] == [(True, 0), (False, 0), (True, 0)]
    assert decisions[0].reset_seconds <= 1 and 59 < decisions[59].reset_seconds <= 60
    assert decisions[59].retry_after_seconds == 0
    assert 0.9 < decisions[60].retry_after_seconds <= 1


@pytest.mark.live
def test_two_workers_of_a_real_server_share_the_count_through_redis(
    settings: ProductsSettings,
    users: dict[Role, User],
    redis_url: str,
    key_prefix: str,
    manager_headers: dict[str, str],
) -> None:
    env = service_env(
        settings,
        SHOP_REDIS_URL=redis_url,
        SHOP_RATE_LIMIT_KEY_PREFIX=key_prefix,
        SHOP_RATE_LIMIT_PER_MINUTE="6",
    )
    server = LiveServer("products_service.main:app", env, workers=2)
    server.start()
    try:
        # A fresh connection per request, so both workers take their share.
        statuses = [
            httpx.get(f"{server.url}{PRODUCTS}", headers=manager_headers).status_code
            for _ in range(8)
        ]
    finally:
        server.stop()
    assert statuses == [200] * 6 + [429] * 2


@pytest.mark.parametrize("backend_name", ["redis", "local"])
def test_a_limit_too_high_to_reach_counts_without_error(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    """A billion a minute is a step far below a microsecond of Redis's clock (it once made
    the key's expiry 0, an error: every request went unlimited)."""
    errors: list[int] = []

    async def run() -> list[Any]:
        if backend_name == "redis":
            url = request.getfixturevalue("redis_url")
            key = f"{request.getfixturevalue('key_prefix')}:user:1"
            backend: Any = RedisRateLimitBackend(url, on_error=lambda: errors.append(1))
        else:
            key, backend = "user:1", LocalRateLimitBackend()
        decisions = [await backend.hit(key, 10**9) for _ in range(50)]
        await backend.close()
        return decisions

    decisions = asyncio.run(run())
    assert errors == []
    assert all(d is not None and d.allowed for d in decisions)
    assert decisions[-1].remaining >= 10**9 - 50
