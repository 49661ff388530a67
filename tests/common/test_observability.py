"""Request ids (made, echoed, passed from sales_service to products_service), JSON log lines
and the Prometheus metrics both services expose."""

import json
import logging
import re
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from common.observability import configure_logging, current_request_id, route_template
from tests.conftest import LiveServer

HEX_ID = re.compile(r"[0-9a-f]{32}")


def test_each_request_gets_an_id_echoed_in_the_response(client: TestClient) -> None:
    first, second = client.get("/health"), client.get("/health")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(HEX_ID.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]
    assert current_request_id() == ""  # nothing leaks out of the request


def test_a_callers_request_id_is_kept_and_an_unsafe_one_replaced(client: TestClient) -> None:
    kept = client.get("/health", headers={"X-Request-ID": "dashboard-7f3a:42"})
    assert kept.headers["X-Request-ID"] == "dashboard-7f3a:42"
    for unsafe in ("two words", "x" * 129, "forged\\nline"):
        answered = client.get("/health", headers={"X-Request-ID": unsafe})
        assert HEX_ID.fullmatch(answered.headers["X-Request-ID"]), unsafe


def test_an_error_answer_carries_the_id_too(client: TestClient) -> None:
    answered = client.get("/api/v1/products/1", headers={"X-Request-ID": "err-trace-1"})
    assert answered.status_code == 401
    assert answered.headers["X-Request-ID"] == "err-trace-1"


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_access_log_is_one_json_object_per_request(
    client: TestClient, manager_headers: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.get("/api/v1/products/987654", headers={**manager_headers, "X-Request-ID": "log-1"})
    lines = [r for r in _json_lines(capsys.readouterr().err) if r.get("request_id") == "log-1"]
    (access,) = [r for r in lines if r["logger"] == "shop.access"]
    assert access["method"] == "GET"
    assert access["path"] == "/api/v1/products/987654"
    assert access["status"] == 404
    assert access["level"] == "INFO"
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", access["time"])
    assert "GET /api/v1/products/987654 -> 404" in access["message"]


def test_app_log_lines_carry_the_request_id_and_text_format_is_available(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from common import observability

    log = logging.getLogger("tests.observability")
    token = observability._request_id.set("ctx-42")
    try:
        capsys.readouterr()
        log.warning("stock is low for %s", "SKU-1")
        (record,) = [r for r in _json_lines(capsys.readouterr().err) if r["logger"] == log.name]
        assert record["message"] == "stock is low for SKU-1"
        assert record["request_id"] == "ctx-42"
        assert record["level"] == "WARNING"

        monkeypatch.setenv("SHOP_LOG_FORMAT", "text")
        configure_logging()
        log.warning("plain line")
        err = capsys.readouterr().err
        assert re.search(r"WARNING +tests\.observability \[ctx-42\] plain line", err)
        assert not _json_lines(err)
    finally:
        observability._request_id.reset(token)
        monkeypatch.delenv("SHOP_LOG_FORMAT")
        configure_logging()


def _counter(client: TestClient, **labels: str) -> float:
    """The http_requests_total sample with these labels (0 when absent)."""
    body = client.get("/metrics")
    assert body.status_code == 200
    assert body.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(body.text):
        if family.name != "http_requests":
            continue
        for sample in family.samples:
            if sample.name == "http_requests_total" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return float(sample.value)
    return 0.0


def test_metrics_count_requests_by_route_template_on_products(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    labels = {"method": "GET", "route": "/api/v1/products/{product_id}", "status": "404"}
    before = _counter(client, **labels)
    for product_id in (911001, 911002):
        assert (
            client.get(f"/api/v1/products/{product_id}", headers=manager_headers).status_code == 404
        )
    assert _counter(client, **labels) == before + 2
    assert 'route="/api/v1/products/911001"' not in client.get("/metrics").text
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    before_unmatched = _counter(client, **unmatched)
    client.get("/no/such/page")
    assert _counter(client, **unmatched) == before_unmatched + 1


def test_metrics_count_requests_on_sales(
    sales_client: TestClient, manager_headers: dict[str, str]
) -> None:
    labels = {"method": "GET", "route": "/api/v1/channels", "status": "200"}
    before = _counter(sales_client, **labels)
    assert sales_client.get("/api/v1/channels", headers=manager_headers).status_code == 200
    assert _counter(sales_client, **labels) == before + 1
    latency = sales_client.get("/metrics").text
    assert 'http_request_duration_seconds_count{method="GET",route="/api/v1/channels"}' in latency


def test_route_template_joins_an_included_routers_prefix() -> None:
    class Route:
        def __init__(self, path: str) -> None:
            self.path = path

    def template(route_path: str | None, path: str) -> str:
        scope: dict[str, Any] = {"path": path}
        if route_path is not None:
            scope["route"] = Route(route_path)
        return route_template(scope)

    assert template("/products/{product_id}", "/api/v1/products/5") == (
        "/api/v1/products/{product_id}"
    )
    assert template("/api/v1/products/{product_id}", "/api/v1/products/5") == (
        "/api/v1/products/{product_id}"
    )
    assert template("", "/api/v1/channels") == "/api/v1/channels"
    assert template("/health", "/health") == "/health"
    assert template("/files/{rest:path}", "/files/a/b/c") == "/files/{rest:path}"
    assert template(None, "/nothing/here") == "<unmatched>"


def _access_lines(server: LiveServer, request_id: str, count: int) -> list[dict[str, Any]]:
    """All log lines with this request id, once ``count`` access lines have it (the line is
    written just after the answer, so it may trail the response by a moment)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            r
            for r in _json_lines(server.log.read_text(errors="replace"))
            if r.get("request_id") == request_id
        ]
        if sum(r["logger"] == "shop.access" for r in lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{count} access lines for {request_id} never reached {server.log}"
            )
        time.sleep(0.1)


def test_sales_passes_the_request_id_on_to_products(
    live_products: LiveServer, live_sales: LiveServer, manager_headers: dict[str, str]
) -> None:
    with (
        httpx.Client(base_url=live_products.url, headers=manager_headers, timeout=30) as products,
        httpx.Client(base_url=live_sales.url, headers=manager_headers, timeout=30) as sales,
    ):
        product = products.post(
            "/api/v1/products",
            json={"sku": "TRACE-1", "name": "Lamp", "price": "10.00", "cost_price": "4.00"},
        ).json()
        warehouse = products.get("/api/v1/warehouses").json()["items"][0]
        receipt = products.post(
            "/api/v1/inventory/receipts",
            json={"product_id": product["id"], "warehouse_id": warehouse["id"], "quantity": 5},
        )
        assert receipt.status_code == 201, receipt.text
        assert (
            sales.post("/api/v1/channels", json={"code": "web", "name": "Web"}).status_code == 201
        )

        request_id = f"trace-{uuid.uuid4().hex}"
        sale = sales.post(
            "/api/v1/sales",
            headers={"X-Request-ID": request_id},
            json={"channel_code": "web", "lines": [{"product_id": product["id"], "quantity": 1}]},
        )
        assert sale.status_code == 201, sale.text
        assert sale.headers["X-Request-ID"] == request_id

    in_products = _access_lines(live_products, request_id, 1)
    calls = [(r["method"], r.get("path", "")) for r in in_products if r["logger"] == "shop.access"]
    assert calls == [("POST", "/api/v1/sale-stock")]  # one call to products per sale
    in_sales = _access_lines(live_sales, request_id, 1)
    access = [(r["method"], r["path"]) for r in in_sales if r["logger"] == "shop.access"]
    assert access == [("POST", "/api/v1/sales")]
    # sales_service's own line for its call to products carries the id too.
    calls_out = [r["message"] for r in in_sales if r["logger"] == "sales_service.clients.products"]
    assert len(calls_out) == 1, in_sales
    assert calls_out[0].startswith("products_service POST /api/v1/sale-stock answered 201 in ")


def test_log_level_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.observability import log_level

    monkeypatch.setenv("SHOP_LOG_LEVEL", "warning")
    assert log_level() == logging.WARNING
    monkeypatch.setenv("SHOP_LOG_LEVEL", "chatty")
    assert log_level() == logging.INFO


def test_a_crashing_request_leaves_its_id_for_the_servers_traceback_line() -> None:
    """uvicorn logs an unhandled error after the app returns, in the request's own task."""
    import asyncio

    from common.observability import HttpMetrics, RequestObservabilityMiddleware

    async def crashing_app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("kaboom")

    async def serve_one() -> str:
        middleware = RequestObservabilityMiddleware(crashing_app, HttpMetrics())
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/x",
            "headers": [(b"x-request-id", b"crash-1")],
        }

        async def nothing() -> dict[str, Any]:
            return {"type": "http.request"}

        async def ignore(_message: Any) -> None:
            return None

        with pytest.raises(RuntimeError):
            await middleware(scope, nothing, ignore)
        return current_request_id()

    assert asyncio.run(serve_one()) == "crash-1"
