"""Test fixtures: a private database in the real MariaDB/MySQL, the app, users and live servers.

The server comes from SHOP_TEST_MYSQL_URL (default: the local MariaDB as root). Where none
answers but a Docker engine does, testcontainers starts a MySQL 8. Each pytest process
gets its own database, built with the Alembic history, and drops it at the end.
"""

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, delete, select, text, update
from sqlalchemy.exc import OperationalError

from common import migrate
from common.auth.security import create_access_token, create_service_token, hash_password
from common.db import make_sessionmaker
from common.errors import LOCK_CONFLICT_CODES
from common.models import Base, OutboxPosition, Role, User, Warehouse
from common.settings import ProductsSettings, SalesSettings

T = TypeVar("T")

# How long one generated example takes on a shared 2-core machine, beside the suite's other
# worker and MariaDB, is not behaviour: no deadline and no slowness check (a pure
# conversion test failed once under load on Hypothesis's default 200 ms).
hypothesis_settings.register_profile(
    "shop", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
hypothesis_settings.load_profile("shop")
REPO_ROOT = Path(__file__).resolve().parent.parent
# A key of this run only: none published in the repository is accepted (see settings).
TEST_JWT_SECRET = secrets.token_urlsafe(32)
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-test-pass"
PASSWORD = "correct-horse-battery"


def _mysql_server_url() -> Iterator[str]:
    url = os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        yield url
        return
    except Exception as exc:
        local_error = exc
    try:
        from testcontainers.mysql import MySqlContainer
    except ImportError:  # pragma: no cover
        raise RuntimeError(f"No MySQL/MariaDB at {url}: {local_error}") from local_error
    try:
        container = MySqlContainer("mysql:8.0", username="root", password="test")
        container.start()
    except Exception as exc:  # no Docker engine either
        raise RuntimeError(
            f"No MySQL/MariaDB at {url} ({local_error}) and no Docker engine for "
            f"testcontainers ({exc}). Start MariaDB or set SHOP_TEST_MYSQL_URL."
        ) from exc
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(3306)
        yield f"mysql+pymysql://root:test@{host}:{port}"
    finally:
        container.stop()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database migrated to head, dropped when the session ends."""
    for server_url in _mysql_server_url():
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with migrate.scratch_database(server_url, f"shop_test_{worker}") as url:
            yield url


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The services' state (spooled uploads above all) of this test process alone: under
    the repository's var/ the xdist workers' reapers took each other's uploads, which their
    own databases know nothing of, for leftovers."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def settings(database_url: str, state_dir: Path) -> ProductsSettings:
    return ProductsSettings(
        environment="test",
        database_url=database_url,
        state_dir=state_dir,
        jwt_secret=TEST_JWT_SECRET,
        first_admin_email=ADMIN_EMAIL,
        first_admin_password=ADMIN_PASSWORD,
        reservation_sweep_seconds=0.5,
        # Slowed logins wait at most this long, so the suite's deliberate failures stay quick.
        login_max_delay_seconds=0.2,
        # Off for the suite, whose users send thousands of requests a minute; the tests of
        # the limit (tests/common/test_rate_limit.py) turn it on for their own apps.
        rate_limit_per_minute=0,
        rate_limit_anonymous_per_minute=0,
    )


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    from common.db import make_engine

    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def users(engine: Engine) -> dict[Role, User]:
    """One active user per role, created once per session."""
    made: dict[Role, User] = {}
    with make_sessionmaker(engine)() as session:
        for role in Role:
            user = User(
                email=f"{role.value}-user@example.com",
                full_name=role.value.title(),
                hashed_password=hash_password(PASSWORD),
                role=role,
                is_active=True,
            )
            session.add(user)
            session.flush()
            made[role] = user
        session.commit()
    return made


def _bearer(user: User, settings: ProductsSettings) -> dict[str, str]:
    token, _ = create_access_token(
        user_id=user.id, role=user.role, settings=settings, email=user.email
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def service_headers(settings: ProductsSettings) -> dict[str, str]:
    """sales_service's own identity, for the service-only routes (stock for sales, holds)."""
    token, _ = create_service_token("sales_service", settings)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def admin_headers(users: dict[Role, User], settings: ProductsSettings) -> dict[str, str]:
    return _bearer(users[Role.ADMIN], settings)


@pytest.fixture(scope="session")
def manager_headers(users: dict[Role, User], settings: ProductsSettings) -> dict[str, str]:
    return _bearer(users[Role.MANAGER], settings)


@pytest.fixture(scope="session")
def viewer_headers(users: dict[Role, User], settings: ProductsSettings) -> dict[str, str]:
    return _bearer(users[Role.VIEWER], settings)


@pytest.fixture(scope="session")
def products_app(settings: ProductsSettings) -> Any:
    from products_service.main import create_app

    return create_app(settings)


@pytest.fixture(scope="session")
def client(products_app: Any, users: dict[Role, User]) -> Iterator[TestClient]:
    """The products app called in-process through its ASGI interface (lifespan included)."""
    with TestClient(products_app, raise_server_exceptions=False) as test_client:
        yield test_client


KEEP_TABLES = {"users", "alembic_version"}


@pytest.fixture(autouse=True)
def clean_database(request: pytest.FixtureRequest) -> None:
    """Each test starts from the migrated state: no catalog, stock or sales; users kept."""
    if "database_url" not in request.fixturenames:
        return
    engine: Engine = request.getfixturevalue("engine")
    for attempt in range(5):
        try:
            _clean(engine)
            return
        except OperationalError as exc:  # a deadlock with a server's background loop
            if attempt == 4 or getattr(exc.orig, "args", (0,))[0] not in LOCK_CONFLICT_CODES:
                raise
            time.sleep(0.2)


def _clean(engine: Engine) -> None:
    with engine.begin() as connection:
        # Outbox consumers in servers of this session hold their position row while they
        # work: wait for any batch in flight, so none lands after this clean.
        connection.execute(select(OutboxPosition.consumer).with_for_update()).all()
        for table in reversed(Base.metadata.sorted_tables):
            if table.name in KEEP_TABLES:
                continue
            if table.name == "categories":  # self-referencing: unlink before deleting
                connection.execute(update(table).values(parent_id=None))
            if table.name == "warehouses":
                connection.execute(delete(table).where(table.c.code != "MAIN"))
            else:
                connection.execute(delete(table))
        connection.execute(
            update(Warehouse).values(is_active=True, is_default=True, name="Main warehouse")
        )


def all_at_once(calls: Sequence[Callable[[], T]], workers: int = 50) -> list[T]:
    """Run the calls from up to ``workers`` threads, released together; results in order."""
    go = threading.Event()

    def run(call: Callable[[], T]) -> T:
        go.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=min(workers, len(calls))) as pool:
        futures = [pool.submit(run, call) for call in calls]
        go.set()
        return [f.result() for f in futures]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A real uvicorn process on loopback, for tests that need real concurrency or crashes."""

    # True: the server and its workers get their own process group, to signal them whole.
    own_process_group = False

    def __init__(self, module: str, env: dict[str, str], workers: int = 1) -> None:
        self.module = module
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = REPO_ROOT / "var" / f"test-{module.split('.')[0]}-{self.port}.log"

    def start(self, timeout: float = 90) -> None:  # generous: a loaded CI machine
        self.log.parent.mkdir(exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            self.module,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--no-proxy-headers",
            "--log-level",
            "warning",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_process_group,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited; see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.module} did not answer within {timeout}s; see {self.log}")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def service_env(settings: ProductsSettings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(
        SHOP_ENVIRONMENT="test",
        SHOP_DATABASE_URL=settings.database_url,
        SHOP_STATE_DIR=str(settings.state_dir),
        SHOP_JWT_SECRET=TEST_JWT_SECRET,
        SHOP_FIRST_ADMIN_EMAIL=ADMIN_EMAIL,
        SHOP_FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SHOP_RATE_LIMIT_PER_MINUTE="0",
        SHOP_RATE_LIMIT_ANONYMOUS_PER_MINUTE="0",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def live_products(settings: ProductsSettings, users: dict[Role, User]) -> Iterator[LiveServer]:
    """products_service running in its own process (2 workers) against the test database."""
    server = LiveServer(
        "products_service.main:app",
        service_env(settings, SHOP_RESERVATION_SWEEP_SECONDS="0.5"),
        workers=2,
    )
    server.start()
    yield server
    server.stop()


# --- sales_service ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def sales_settings(settings: ProductsSettings, live_products: LiveServer) -> SalesSettings:
    """Sales settings on the same test database, calling the live products_service."""
    return SalesSettings(
        environment="test",
        database_url=settings.database_url,
        state_dir=settings.state_dir,
        jwt_secret=TEST_JWT_SECRET,
        first_admin_email=ADMIN_EMAIL,
        first_admin_password=ADMIN_PASSWORD,
        products_service_url=live_products.url,
        products_timeout_seconds=10,
        stock_sync_seconds=0.5,
        rate_limit_per_minute=0,
        rate_limit_anonymous_per_minute=0,
        # The rollups move only when a test says so (consume_once / catch_up), so tests
        # choose how far they lag; reports are exact either way.
        rollup_poll_seconds=3600,
    )


@pytest.fixture(scope="session")
def sales_app(sales_settings: SalesSettings) -> Any:
    from sales_service.main import create_app

    return create_app(sales_settings)


@pytest.fixture(scope="session")
def sales_client(sales_app: Any, users: dict[Role, User]) -> Iterator[TestClient]:
    """sales_service in-process; its calls to products_service go over real HTTP."""
    with TestClient(sales_app, raise_server_exceptions=False) as test_client:
        yield test_client


def sales_env(settings: ProductsSettings, products_url: str, **extra: str) -> dict[str, str]:
    return service_env(
        settings,
        SHOP_PRODUCTS_SERVICE_URL=products_url,
        SHOP_STOCK_SYNC_SECONDS="0.5",
        **extra,
    )


@pytest.fixture(scope="session")
def live_sales(
    settings: ProductsSettings, live_products: LiveServer, users: dict[Role, User]
) -> Iterator[LiveServer]:
    """sales_service in its own process (2 workers), calling live_products over loopback."""
    server = LiveServer("sales_service.main:app", sales_env(settings, live_products.url), workers=2)
    server.start()
    yield server
    server.stop()
