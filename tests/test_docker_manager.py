"""The README's way of running the system, as a newcomer or CI would: ./docker-manager.sh in
local mode on the embedded SQLite default and on MariaDB, then the whole path over HTTP;
plus the files an operator relies on (compose, Kubernetes, .env.example) kept consistent."""

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from common import migrate
from common.settings import ProductsSettings, SalesSettings
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    REPO_ROOT,
    TEST_JWT_SECRET,
    _mysql_server_url,
    free_port,
)

MANAGER = REPO_ROOT / "docker-manager.sh"
COMMAND_TIMEOUT = 180  # seconds; start waits at most SHOP_START_TIMEOUT for /health


class Manager:
    """Runs ./docker-manager.sh with one environment: local mode, free ports, own state dir."""

    def __init__(self, state_dir: Path, database_url: str) -> None:
        self.state_dir = state_dir
        self.products_port, self.sales_port = free_port(), free_port()
        while self.sales_port == self.products_port:
            self.sales_port = free_port()
        self.products_url = f"http://127.0.0.1:{self.products_port}"
        self.sales_url = f"http://127.0.0.1:{self.sales_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
        self.env.update(
            VENV=str(Path(sys.executable).parent.parent),
            SHOP_RUN_MODE="local",
            SHOP_STATE_DIR=str(state_dir),
            SHOP_PRODUCTS_PORT=str(self.products_port),
            SHOP_SALES_PORT=str(self.sales_port),
            SHOP_START_TIMEOUT="90",
            SHOP_STOP_TIMEOUT="15",
            SHOP_DATABASE_URL=database_url,
            SHOP_ENVIRONMENT="test",
            SHOP_JWT_SECRET=TEST_JWT_SECRET,
            SHOP_FIRST_ADMIN_EMAIL=ADMIN_EMAIL,
            SHOP_FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
            SHOP_STOCK_SYNC_SECONDS="0.5",
        )

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MANAGER), *args],
            cwd=REPO_ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def pids(self) -> dict[str, int]:
        return {path.stem: int(path.read_text().strip()) for path in self.state_dir.glob("*.pid")}


def process_running(pid: int) -> bool:
    """True while the pid is a live process (a zombie awaiting its reaper does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def mysql_database() -> Iterator[Callable[[], str]]:
    """Creates fresh, empty databases on the test MariaDB/MySQL; drops them afterwards."""
    servers = _mysql_server_url()
    server_url = next(servers)
    try:
        with ExitStack() as created:
            yield lambda: created.enter_context(
                migrate.scratch_database(server_url, "shop_dm", migrated=False)
            )
    finally:
        next(servers, None)  # let the server generator finish (stops a testcontainer)


@pytest.fixture(params=["sqlite", "mariadb"])
def database_pair(
    request: pytest.FixtureRequest, tmp_path: Path, mysql_database: Callable[[], str]
) -> tuple[str, str]:
    """(where the services run, where a backup is restored), both fresh and empty."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}", f"sqlite:///{tmp_path / 'restored.db'}"
    return mysql_database(), mysql_database()


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()


def test_manager_runs_the_system_locally(tmp_path: Path, database_pair: tuple[str, str]) -> None:
    database_url, restore_url = database_pair
    manager = Manager(tmp_path / "state", database_url)
    started: dict[str, int] = {}
    try:
        start = manager.run("start")
        assert start.returncode == 0, start.stdout + start.stderr
        assert "Mode: local processes" in start.stdout
        for url in (manager.products_url, manager.sales_url):
            assert url in start.stdout and f"{url}/docs" in start.stdout
        assert f"{ADMIN_EMAIL} / {ADMIN_PASSWORD}" in start.stdout
        started = manager.pids()
        assert set(started) == {"products_service", "sales_service"}
        assert all(process_running(pid) for pid in started.values())

        # A second start finds both running and starts nothing more.
        again = manager.run("start")
        assert again.returncode == 0, again.stdout + again.stderr
        assert manager.pids() == started

        _use_the_api(manager)

        status = manager.run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"products_service: up \(pid \d+\)", status.stdout)
        assert re.search(r"sales_service: up \(pid \d+\)", status.stdout)

        backup_file = tmp_path / ("backup.db" if "sqlite" in database_url else "backup.sql")
        backup = manager.run("backup", str(backup_file))
        assert backup.returncode == 0, backup.stdout + backup.stderr
        refused = manager.run("restore", str(backup_file), "--yes")
        assert refused.returncode != 0
        assert "is running" in refused.stderr and "stop" in refused.stderr

        stop = manager.run("stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not [pid for pid in started.values() if process_running(pid)]
        assert manager.pids() == {}

        down = manager.run("status")
        assert down.returncode != 0
        assert "products_service: down" in down.stdout
        assert "sales_service: down" in down.stdout

        # The backup taken while serving restores into another, empty database.
        restore = manager.run("restore", str(backup_file), "--yes", SHOP_DATABASE_URL=restore_url)
        assert restore.returncode == 0, restore.stdout + restore.stderr
        on_hand = scalar(
            restore_url,
            "SELECT l.on_hand FROM stock_levels l JOIN products p ON p.id = l.product_id"
            " WHERE p.sku = :sku",
            sku="SMOKE-DM-1",
        )
        assert on_hand == 7
    finally:
        manager.run("stop")
        for pid in started.values():  # only if stop failed: never leave a server behind
            if process_running(pid):
                os.kill(pid, 9)


def _use_the_api(manager: Manager) -> None:
    """Swagger pages, login, one sale through sales_service lowering stock in products."""
    with (
        httpx.Client(base_url=manager.products_url, timeout=30) as products,
        httpx.Client(base_url=manager.sales_url, timeout=30) as sales,
    ):
        for client in (products, sales):
            docs = client.get("/docs")
            assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
            assert client.get("/openapi.json").status_code == 200

        bad = products.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "not-the-password"}
        )
        assert bad.status_code == 401, bad.text
        login = sales.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        products.headers.update(auth)
        sales.headers.update(auth)

        product = products.post(
            "/api/v1/products",
            json={"sku": "SMOKE-DM-1", "name": "Kettle", "price": "30.00", "cost_price": "12.00"},
        )
        assert product.status_code == 201, product.text
        product_id = product.json()["id"]
        warehouse_id = products.get("/api/v1/warehouses").json()["items"][0]["id"]
        receipt = products.post(
            "/api/v1/inventory/receipts",
            json={"product_id": product_id, "warehouse_id": warehouse_id, "quantity": 10},
        )
        assert receipt.status_code == 201, receipt.text

        channel = sales.post("/api/v1/channels", json={"code": "web-store", "name": "Web store"})
        assert channel.status_code == 201, channel.text
        sale = sales.post(
            "/api/v1/sales",
            json={
                "channel_code": "web-store",
                "lines": [{"product_id": product_id, "quantity": 3}],
            },
        )
        assert sale.status_code == 201, sale.text
        assert sale.json()["total"] == "90.00"

        totals = products.get(f"/api/v1/products/{product_id}").json()["totals"]
        assert (totals["on_hand"], totals["available"]) == (7, 7)
        assert products.get("/api/v1/inventory/ledger-check").json()["ok"] is True

        report = sales.get("/api/v1/reports/revenue", params={"period": "month"})
        assert report.status_code == 200, report.text
        totals = report.json()["totals"]
        assert (totals["revenue"], totals["units"], totals["orders"]) == ("90.00", 3, 1)


def test_start_fails_clearly_when_a_port_is_taken(tmp_path: Path) -> None:
    manager = Manager(tmp_path / "state", f"sqlite:///{tmp_path / 'shop.db'}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", manager.products_port))
        busy.listen()
        start = manager.run("start")
    assert start.returncode != 0
    assert f"port {manager.products_port}" in start.stderr
    assert manager.pids() == {}


def test_stop_removes_a_stale_pid_file(tmp_path: Path) -> None:
    manager = Manager(tmp_path / "state", f"sqlite:///{tmp_path / 'shop.db'}")
    manager.state_dir.mkdir()
    dead = subprocess.Popen(["true"])  # a pid that no longer runs
    dead.wait()
    (manager.state_dir / "products_service.pid").write_text(f"{dead.pid}\n")
    stop = manager.run("stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stale pid file" in stop.stdout
    assert not (manager.state_dir / "products_service.pid").exists()


FAKE_DOCKER = """#!/usr/bin/env bash
echo "$*" >> "$DOCKER_CALLS"
case "$*" in
  "compose exec -T mysql"*) echo "-- dump of the compose database" ;;
  "compose ps --status running --quiet"*) echo "0123abcd" ;;
esac
exit 0
"""


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_with_a_docker_engine_the_manager_drives_compose(tmp_path: Path) -> None:
    """A stand-in `docker` that answers `docker info` (and stand-in services answering
    /health) shows the compose path: mode, commands, waiting, backup and refusal."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    calls = tmp_path / "docker-calls.txt"
    manager = Manager(tmp_path / "state", f"sqlite:///{tmp_path / 'unused.db'}")
    servers = [
        ThreadingHTTPServer(("127.0.0.1", port), _Healthy)
        for port in (manager.products_port, manager.sales_port)
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DOCKER_CALLS": str(calls),
        "SHOP_RUN_MODE": "auto",
    }
    try:
        start = manager.run("start", **env)
        assert start.returncode == 0, start.stdout + start.stderr
        assert "Mode: docker compose (a Docker engine answers)" in start.stdout
        assert f"{manager.sales_url}/docs" in start.stdout
        assert "compose up -d --build --remove-orphans" in calls.read_text().splitlines()

        status = manager.run("status", **env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "sales_service: up" in status.stdout

        dump = tmp_path / "compose.sql"
        backup = manager.run("backup", str(dump), **env)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert dump.read_text() == "-- dump of the compose database\n"
        refused = manager.run("restore", str(dump), "--yes", **env)
        assert refused.returncode != 0 and "is running" in refused.stderr

        stop = manager.run("stop", **env)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "compose down --remove-orphans" in calls.read_text().splitlines()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


# --- the files an operator relies on ----------------------------------------------------


def _env_example_keys() -> set[str]:
    keys = set()
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            keys.add(match.group(1))
    return keys


def test_env_example_lists_every_setting_and_manager_variable() -> None:
    documented = _env_example_keys()
    settings = {
        f"SHOP_{name.upper()}"
        for model in (ProductsSettings, SalesSettings)
        for name in model.model_fields
    }
    manager_reads = set(re.findall(r"\$\{(SHOP_[A-Z_]+)", MANAGER.read_text()))
    compose_reads = set(
        re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (REPO_ROOT / "docker-compose.yml").read_text())
    )
    assert manager_reads and compose_reads
    assert sorted((settings | manager_reads | compose_reads) - documented) == []


def test_compose_orders_database_migration_and_services() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["mysql"]["image"].startswith("mysql:8")
    assert "healthcheck" in services["mysql"]
    assert any(v.endswith(":/var/lib/mysql") for v in services["mysql"]["volumes"])
    assert "mysql-data" in compose["volumes"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["mysql"]["condition"] == "service_healthy"
    for name, port in (("products", 8000), ("sales", 8001)):
        service = services[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["mysql"]["condition"] == "service_healthy"
        assert f"http://127.0.0.1:{port}/ready" in " ".join(service["healthcheck"]["test"])
        assert service["ports"][0].endswith(f":{port}")
    assert services["sales"]["environment"]["SHOP_PRODUCTS_SERVICE_URL"] == "http://products:8000"


def test_compose_lets_the_dashboard_call_sales_from_where_products_is_published() -> None:
    """Unless .env says otherwise, sales_service allows the dashboard's origin on the port
    compose publishes products_service at, as ./docker-manager.sh does in local mode."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    published = re.fullmatch(
        r".*:(\$\{SHOP_PRODUCTS_PORT:-8000\}):8000", services["products"]["ports"][0]
    )
    assert published, services["products"]["ports"]
    origins = services["sales"]["environment"]["SHOP_CORS_ORIGINS"]
    assert origins.startswith("${SHOP_CORS_ORIGINS:-[")
    for host in ("127.0.0.1", "localhost"):
        assert f'"http://{host}:{published[1]}"' in origins


def _manifests() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and document["kind"] != "Kustomization"
    ]


def test_kubernetes_deployments_have_probes_resources_services_and_autoscalers() -> None:
    manifests = _manifests()
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for manifest in manifests:
        by_kind.setdefault(manifest["kind"], {})[manifest["metadata"]["name"]] = manifest
    deployments = by_kind["Deployment"]
    assert set(deployments) == {"products-service", "sales-service"}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]
        assert {"configMapRef": {"name": "shop-config"}} in container["envFrom"]
        assert {"secretRef": {"name": "shop-secrets"}} in container["envFrom"]
        assert (
            by_kind["Service"][name]["spec"]["selector"]
            == (deployment["spec"]["selector"]["matchLabels"])
        )
        assert by_kind["HorizontalPodAutoscaler"][name]["spec"]["scaleTargetRef"]["name"] == name
    job = by_kind["Job"]["shop-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"]
    config = by_kind["ConfigMap"]["shop-config"]["data"]
    products_service = deployments["products-service"]["spec"]["template"]["spec"]
    port = products_service["containers"][0]["ports"][0]["containerPort"]
    assert config["SHOP_PRODUCTS_SERVICE_URL"] == f"http://products-service:{port}"


def test_kubernetes_secret_placeholders_are_refused_in_production() -> None:
    """An unedited Secret must stop the pods rather than run with known credentials."""
    (secret,) = [m for m in _manifests() if m["kind"] == "Secret"]
    values = secret["stringData"]
    config = next(m for m in _manifests() if m["kind"] == "ConfigMap")["data"]
    with pytest.raises(ValueError, match="SHOP_JWT_SECRET"):
        ProductsSettings(
            environment=config["SHOP_ENVIRONMENT"],
            database_url=values["SHOP_DATABASE_URL"],
            jwt_secret=values["SHOP_JWT_SECRET"],
            first_admin_password=values["SHOP_FIRST_ADMIN_PASSWORD"],
        )
    with pytest.raises(ValueError, match="SHOP_FIRST_ADMIN_PASSWORD"):
        ProductsSettings(
            environment=config["SHOP_ENVIRONMENT"],
            database_url=values["SHOP_DATABASE_URL"],
            jwt_secret=TEST_JWT_SECRET,
            first_admin_password=values["SHOP_FIRST_ADMIN_PASSWORD"],
        )
