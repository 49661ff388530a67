"""Login throttling slows guessing but never locks an account's owner out.

Each test uses a fresh account and its own client addresses (TestClient's ``client``), so
no test's failures count in another's.
"""

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.settings import ProductsSettings
from tests.conftest import ADMIN_EMAIL

GOOD = "the-right-password"


@pytest.fixture
def account(client: TestClient, admin_headers: dict[str, str]) -> str:
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    created = client.post(
        "/api/v1/users",
        json={"email": email, "password": GOOD, "role": "manager"},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    return email


@contextmanager
def from_address(app: Any, address: str) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, client=(address, 40000)) as caller:
        yield caller


def log_in(caller: TestClient, email: str, password: str, **headers: str) -> Any:
    return caller.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers=headers
    )


@contextmanager
def tuned(settings: ProductsSettings, **values: Any) -> Iterator[None]:
    before = {name: getattr(settings, name) for name in values}
    for name, value in values.items():
        setattr(settings, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(settings, name, value)


def test_a_stranger_guessing_cannot_lock_the_owner_out(products_app: Any, account: str) -> None:
    """The defect: five wrong passwords from anyone locked the account for 15 minutes."""
    with from_address(products_app, "203.0.113.9") as attacker:
        statuses = [log_in(attacker, account, f"guess-{n}").status_code for n in range(8)]
        assert statuses[:5] == [401] * 5
        assert set(statuses[5:]) == {429}
        # The guesser's own address now waits, even with the right password.
        refused = log_in(attacker, account, GOOD)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.json()["error"] == "too_many_requests"
        assert "from this address" in refused.json()["detail"]
    with from_address(products_app, "198.51.100.7") as owner:
        answer = log_in(owner, account, GOOD)
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["email"] == account


def test_the_only_admin_can_log_in_while_being_guessed(products_app: Any) -> None:
    from tests.conftest import ADMIN_PASSWORD

    with from_address(products_app, "203.0.113.10") as attacker:
        for n in range(7):
            log_in(attacker, ADMIN_EMAIL, f"guess-{n}")
    with from_address(products_app, "198.51.100.8") as admin:
        assert log_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200


def test_the_wait_of_a_guessing_address_doubles(
    products_app: Any, account: str, settings: ProductsSettings
) -> None:
    with (
        # A wait of 2 s: a login checks a password hash, slow on purpose, and on a loaded
        # machine one took over a second, so a 1 s wait had run out before the next try.
        tuned(settings, login_max_failures_per_pair=2, login_pair_wait_seconds=2.0),
        from_address(products_app, "203.0.113.11") as attacker,
    ):
        assert [log_in(attacker, account, "x-wrong").status_code for _ in range(2)] == [401] * 2
        first = log_in(attacker, account, "x-wrong")
        assert first.status_code == 429
        assert int(first.headers["Retry-After"]) in (1, 2)
        time.sleep(2.1)
        assert log_in(attacker, account, "x-wrong").status_code == 401
        second = log_in(attacker, account, "x-wrong")
        assert second.status_code == 429
        assert int(second.headers["Retry-After"]) in (3, 4)  # 4 s after the third failure
        time.sleep(4.1)
        # Waited out: the right password gets in, and the slate is clean for this pair.
        assert log_in(attacker, account, GOOD).status_code == 200
        assert log_in(attacker, account, "x-wrong").status_code == 401


def test_many_failures_on_an_account_slow_it_down_but_the_right_password_works(
    products_app: Any, account: str, settings: ProductsSettings
) -> None:
    """Guesses from many addresses (a botnet) only slow every attempt on the account."""
    with tuned(settings, login_max_failures_per_account=4, login_max_delay_seconds=0.6):
        for n in range(6):
            with from_address(products_app, f"192.0.2.{n + 1}") as bot:
                assert log_in(bot, account, "botnet-guess").status_code == 401
        with from_address(products_app, "198.51.100.9") as owner:
            started = time.monotonic()
            answer = log_in(owner, account, GOOD)
            elapsed = time.monotonic() - started
        assert answer.status_code == 200
        assert elapsed >= 0.6  # 6 failures, 2 past the limit of 4: 0.25 s x 2^2, capped at 0.6


def test_an_address_guessing_many_accounts_is_slowed_not_refused(
    products_app: Any, account: str, settings: ProductsSettings
) -> None:
    """Thirty failures from one address (an office behind one NAT) used to lock every
    account behind it."""
    with (
        tuned(settings, login_max_failures_per_client=3, login_max_delay_seconds=0.5),
        from_address(products_app, "203.0.113.12") as office,
    ):
        for n in range(3):
            assert log_in(office, f"nobody-{n}@example.com", "wrong").status_code == 401
        started = time.monotonic()
        answer = log_in(office, account, GOOD)
        assert answer.status_code == 200
        assert time.monotonic() - started >= 0.25


def test_a_forged_forwarded_for_header_does_not_reset_the_count(
    products_app: Any, account: str
) -> None:
    """No proxy is trusted by default: X-Forwarded-For is the caller's own claim."""
    with from_address(products_app, "203.0.113.13") as attacker:
        statuses = [
            log_in(attacker, account, "wrong", **{"X-Forwarded-For": f"10.9.8.{n}"}).status_code
            for n in range(7)
        ]
    assert statuses == [401] * 5 + [429] * 2


def test_a_configured_proxy_names_the_client(settings: ProductsSettings, account: str) -> None:
    from products_service.main import create_app

    proxied = settings.model_copy(update={"forwarded_allow_ips": "192.0.2.250"})
    app = create_app(proxied)
    with from_address(app, "192.0.2.250") as proxy:
        # Each client behind the proxy is counted on its own.
        statuses = [
            log_in(proxy, account, "wrong", **{"X-Forwarded-For": f"198.18.0.{n}"}).status_code
            for n in range(7)
        ]
        assert statuses == [401] * 7
        # One client behind it still gets its own limit.
        same = [
            log_in(proxy, account, "wrong", **{"X-Forwarded-For": "198.18.1.1"}).status_code
            for _ in range(6)
        ]
        assert same == [401] * 5 + [429]
    with from_address(app, "203.0.113.14") as stranger:
        # An address that is no proxy cannot pick the client's address either.
        statuses = [
            log_in(stranger, account, "wrong", **{"X-Forwarded-For": f"198.18.2.{n}"}).status_code
            for n in range(6)
        ]
        assert statuses == [401] * 5 + [429]


def test_guesses_sent_at_once_get_no_more_tries_than_guesses_sent_in_turn(
    products_app: Any, account: str
) -> None:
    with (
        from_address(products_app, "203.0.113.15") as attacker,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        statuses = list(pool.map(lambda n: log_in(attacker, account, f"burst-{n}"), range(24)))
    codes = [a.status_code for a in statuses]
    assert codes.count(401) == 5, [a.text for a in statuses if a.status_code != 429]
    assert codes.count(429) == 19


def test_the_oauth2_form_is_throttled_the_same_way(products_app: Any, account: str) -> None:
    with from_address(products_app, "203.0.113.16") as attacker:
        statuses = [
            attacker.post(
                "/api/v1/auth/token", data={"username": account, "password": "wrong"}
            ).status_code
            for _ in range(6)
        ]
    assert statuses == [401] * 5 + [429]


def test_throttle_is_shared_by_separate_app_instances(
    products_app: Any, settings: ProductsSettings, account: str
) -> None:
    """Failures recorded through one process count in another (they share the database)."""
    from products_service.main import create_app

    with from_address(products_app, "203.0.113.17") as one:
        for _ in range(5):
            assert log_in(one, account, "wrong").status_code == 401
    with from_address(create_app(settings), "203.0.113.17") as other_process:
        assert log_in(other_process, account, GOOD).status_code == 429
