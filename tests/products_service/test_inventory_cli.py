"""`python -m products_service.cli`: check-ledger, create-admin and migrate, as run by ops."""

import json
import os
import subprocess
import sys

from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, update

from common.auth.security import verify_password
from common.db import make_sessionmaker
from common.models import Role, StockLevel, User
from tests.conftest import REPO_ROOT
from tests.products_service.test_inventory import (
    main_warehouse,
    make_product,
    post,
    receive,
)


def run_cli(
    database_url: str, *args: str, module: str = "products_service.cli"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(SHOP_ENVIRONMENT="test", SHOP_DATABASE_URL=database_url, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_ledger_exits_0_when_sound_and_1_after_tampering(
    client: TestClient, engine: Engine, manager_headers: dict, database_url: str
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    receive(client, manager_headers, product, wh, 9)
    post(
        client,
        manager_headers,
        "/damages",
        {"product_id": product, "warehouse_id": wh, "quantity": 2, "reason": "x"},
    )

    sound = run_cli(database_url, "check-ledger")
    assert sound.returncode == 0, sound.stderr
    assert json.loads(sound.stdout) == {"ok": True, "levels_checked": 1, "mismatches": []}

    with engine.begin() as connection:
        connection.execute(update(StockLevel).values(on_hand=StockLevel.on_hand - 1))
    try:
        broken = run_cli(database_url, "check-ledger")
        assert broken.returncode == 1, broken.stderr
        result = json.loads(broken.stdout)
        assert result["ok"] is False
        [mismatch] = result["mismatches"]
        assert (mismatch["product_id"], mismatch["on_hand"], mismatch["ledger_sum"]) == (
            product,
            6,
            7,
        )
    finally:
        with engine.begin() as connection:
            connection.execute(update(StockLevel).values(on_hand=StockLevel.on_hand + 1))
    assert run_cli(database_url, "check-ledger").returncode == 0


def test_create_admin_creates_once_and_migrate_is_repeatable(
    engine: Engine, database_url: str
) -> None:
    email = "ops-admin@example.com"
    try:
        created = run_cli(
            database_url, "create-admin", "--email", email.upper(), "--password", "long-enough-1"
        )
        assert created.returncode == 0, created.stderr
        assert email in created.stdout
        again = run_cli(database_url, "create-admin", "--email", email, "--password", "other-pw-2")
        assert again.returncode == 0, again.stderr
        with make_sessionmaker(engine)() as session:
            [user] = session.scalars(select(User).where(User.email == email)).all()
            assert user.role == Role.ADMIN
            # An existing account is left alone, password included.
            assert verify_password("long-enough-1", user.hashed_password)
    finally:
        with engine.begin() as connection:
            connection.execute(delete(User).where(User.email == email))

    short = run_cli(database_url, "create-admin", "--email", email, "--password", "short")
    assert short.returncode == 2
    assert "at least 8" in short.stderr

    migrated = run_cli(database_url, "migrate")
    assert migrated.returncode == 0, migrated.stderr

    missing = run_cli(database_url, "create-admin", "--email", email)
    assert missing.returncode == 2
    assert "--password" in missing.stderr
