"""Reservations through the HTTP API (in-process): reserve, commit, release, read, expire."""

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from common.contracts import (
    RESERVATIONS_PATH,
    InsufficientStockBody,
    ReservationRead,
    ReserveRequest,
)
from common.db import make_sessionmaker, utcnow
from common.idempotency import request_hash
from common.models import (
    MovementType,
    ProductStatus,
    Reservation,
    ReservationStatus,
    Role,
    User,
    Warehouse,
)
from common.settings import ProductsSettings
from products_service.reservations import repository
from products_service.reservations.service import Demand, allocate, expire_due_reservations
from tests.products_service.factories import (
    create_product,
    create_warehouse,
    ledger_problems,
    level,
    main_warehouse_id,
    movements,
    names_of,
    receive_stock,
    reservation_status,
    set_reservation_expiry,
    short_line,
)

_keys = iter(range(1, 1_000_000))
COMMIT = {"sale_reference": "S-9"}


def body(*lines: dict[str, Any], key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"idempotency_key": key or f"key-{next(_keys)}", "lines": list(lines), **extra}


def line(product_id: int, quantity: int, warehouse_id: int | None = None) -> dict[str, Any]:
    return {"product_id": product_id, "quantity": quantity, "warehouse_id": warehouse_id}


def reserve(client: TestClient, headers: dict, payload: dict[str, Any]) -> Any:
    return client.post(RESERVATIONS_PATH, json=payload, headers=headers)


def reservation_count(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(Reservation)) or 0


def allocated(answer: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    return [
        (x["line_no"], x["product_id"], x["warehouse_id"], x["quantity"]) for x in answer["lines"]
    ]


@pytest.fixture
def main(engine: Engine) -> int:
    return main_warehouse_id(engine)


# --- reserve ----------------------------------------------------------------------------


def test_reserve_holds_stock_until_committed_released_or_expired(
    client: TestClient,
    engine: Engine,
    main: int,
    manager_headers: dict,
    service_headers: dict,
    users: dict[Role, User],
    settings: ProductsSettings,
) -> None:
    product = create_product(engine, stock={main: 10})
    before = utcnow()
    manager_id = users[Role.MANAGER].id
    response = reserve(
        client, service_headers, body(line(product, 4), reference="S-1", actor_id=manager_id)
    )
    assert response.status_code == 201, response.text
    answer = ReservationRead.model_validate(response.json())
    assert answer.status is ReservationStatus.ACTIVE
    assert answer.reference == "S-1"
    assert allocated(response.json()) == [(1, product, main, 4)]
    ttl = timedelta(seconds=settings.reservation_default_ttl_seconds)
    assert before + ttl <= answer.expires_at <= utcnow() + ttl
    assert level(engine, product, main) == (10, 4)

    got = client.get(f"{RESERVATIONS_PATH}/{answer.id}", headers=manager_headers)
    assert got.status_code == 200
    assert got.json() == response.json()
    with make_sessionmaker(engine)() as session:
        assert session.get_one(Reservation, answer.id).actor_id == users[Role.MANAGER].id
    assert ledger_problems(engine) == []


def test_ttl_is_taken_from_the_request_up_to_the_maximum(
    client: TestClient,
    engine: Engine,
    main: int,
    manager_headers: dict,
    service_headers: dict,
    settings: ProductsSettings,
) -> None:
    product = create_product(engine, stock={main: 10})
    too_long = reserve(
        client,
        service_headers,
        body(line(product, 1), ttl_seconds=settings.reservation_max_ttl_seconds + 1),
    )
    assert too_long.status_code == 422
    assert too_long.json()["fields"][0]["field"] == "body.ttl_seconds"
    assert level(engine, product, main).reserved == 0

    response = reserve(client, service_headers, body(line(product, 1), ttl_seconds=120))
    assert response.status_code == 201
    expires_at = datetime.fromisoformat(response.json()["expires_at"])
    assert abs((expires_at - utcnow()).total_seconds() - 120) < 10


def test_same_key_and_body_returns_the_first_reservation_and_changes_nothing(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 10})
    payload = body(line(product, 3), reference="S-2")
    first = reserve(client, service_headers, payload)
    again = reserve(client, service_headers, payload)
    # the same request spelled differently (defaults written out, keys reordered) is the same
    spelled_out = {**dict(reversed(list(payload.items()))), "ttl_seconds": None}
    third = reserve(client, service_headers, spelled_out)
    assert (first.status_code, again.status_code, third.status_code) == (201, 200, 200)
    assert first.json() == again.json() == third.json()
    assert level(engine, product, main).reserved == 3
    assert reservation_count(engine) == 1


def test_same_key_with_another_body_is_refused(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 10})
    first = reserve(client, service_headers, body(line(product, 3), key="k-reused"))
    other = reserve(client, service_headers, body(line(product, 4), key="k-reused"))
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert other.json()["reservation_id"] == first.json()["id"]
    assert level(engine, product, main).reserved == 3
    assert reservation_count(engine) == 1


def _wait_for_blocked_insert(engine: Engine, within: float = 10) -> bool:
    """True once a connection to the test database sits in an INSERT INTO reservations."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            blocked = connection.execute(
                text(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                    " WHERE db = :db AND info LIKE 'INSERT INTO reservations %'"
                ),
                {"db": engine.url.database},
            ).scalar_one()
        if blocked:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("same_body", [True, False])
def test_a_key_being_inserted_elsewhere_is_waited_for_then_answered_with(
    client: TestClient,
    engine: Engine,
    main: int,
    manager_headers: dict,
    service_headers: dict,
    same_body: bool,
) -> None:
    """The unique key decides when two requests with one key do not share a level lock."""
    product = create_product(engine, stock={main: 5})
    payload = body(line(product, 2), key="in-flight")
    digest = request_hash(ReserveRequest.model_validate(payload).model_dump(mode="json"))
    answers: list[Any] = []
    with make_sessionmaker(engine)() as elsewhere:
        first = Reservation(
            idempotency_key="in-flight",
            request_hash=digest if same_body else "0" * 64,
            status=ReservationStatus.ACTIVE,
            expires_at=utcnow() + timedelta(minutes=5),
            lines=[],
        )
        elsewhere.add(first)
        elsewhere.flush()
        retry = threading.Thread(
            target=lambda: answers.append(reserve(client, service_headers, payload))
        )
        retry.start()
        assert _wait_for_blocked_insert(engine)
        elsewhere.commit()
    retry.join(timeout=30)
    [answer] = answers
    if same_body:
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == first.id
    else:
        assert answer.status_code == 422
        assert answer.json()["error"] == "idempotency_key_reused"
    assert reservation_count(engine) == 1
    assert level(engine, product, main) == (5, 0)


def test_a_refused_reservation_leaves_its_key_free_for_a_retry(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 1})
    payload = body(line(product, 3))
    assert reserve(client, service_headers, payload).status_code == 409
    receive_stock(engine, product_id=product, warehouse_id=main, quantity=5)
    assert reserve(client, service_headers, payload).status_code == 201
    assert level(engine, product, main) == (6, 3)


def test_one_short_line_fails_the_whole_reservation_and_is_the_one_named(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    plenty = create_product(engine, stock={main: 10})
    scarce = create_product(engine, stock={main: 3})
    also_plenty = create_product(engine, stock={main: 10})
    response = reserve(
        client,
        service_headers,
        body(line(plenty, 2), line(scarce, 5), line(also_plenty, 1)),
    )
    assert response.status_code == 409
    answer = InsufficientStockBody.model_validate(response.json())
    assert answer.error == "insufficient_stock"
    assert [s.model_dump() for s in answer.lines] == [
        short_line(engine, line_no=2, product_id=scarce, requested=5, available=3)
    ]
    assert "line 2" in answer.detail
    for product in (plenty, scarce, also_plenty):
        assert level(engine, product, main).reserved == 0
    assert reservation_count(engine) == 0


def test_every_short_line_is_listed(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    a = create_product(engine, stock={main: 1})
    b = create_product(engine, stock={main: 10})
    c = create_product(engine)
    response = reserve(client, service_headers, body(line(a, 2), line(b, 2), line(c, 1)))
    assert response.status_code == 409
    short = [(s["line_no"], s["requested"], s["available"]) for s in response.json()["lines"]]
    assert short == [(1, 2, 1), (3, 1, 0)]
    assert level(engine, b, main).reserved == 0


def test_two_lines_of_one_product_share_its_stock(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 5})
    too_much = reserve(client, service_headers, body(line(product, 3), line(product, 3)))
    assert too_much.status_code == 409
    assert [(s["line_no"], s["available"]) for s in too_much.json()["lines"]] == [(2, 2)]
    assert level(engine, product, main).reserved == 0

    exact = reserve(client, service_headers, body(line(product, 3), line(product, 2)))
    assert exact.status_code == 201
    assert allocated(exact.json()) == [(1, product, main, 3), (2, product, main, 2)]
    assert level(engine, product, main) == (5, 5)


def test_a_line_is_split_over_warehouses_most_stocked_first(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 3, north: 5})
    response = reserve(client, service_headers, body(line(product, 7)))
    assert response.status_code == 201, response.text
    assert sorted(allocated(response.json())) == [(1, product, main, 2), (1, product, north, 5)]
    assert level(engine, product, north) == (5, 5)
    assert level(engine, product, main) == (3, 2)
    assert ledger_problems(engine) == []


def test_a_named_warehouse_is_the_only_source_for_its_line(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 10, north: 2})
    first = reserve(client, service_headers, body(line(product, 2, north)))
    assert allocated(first.json()) == [(1, product, north, 2)]
    # each line named by SKU and warehouse code too, as the list of reservations shows it
    named = [(x["sku"], x["warehouse_code"]) for x in first.json()["lines"]]
    assert named == [names_of(engine, product, north)]
    listed = client.get(RESERVATIONS_PATH, headers=manager_headers).json()["items"]
    assert [(x["sku"], x["warehouse_code"]) for x in listed[0]["lines"]] == named
    second = reserve(client, service_headers, body(line(product, 1, north)))
    assert second.status_code == 409
    assert second.json()["lines"] == [
        short_line(
            engine, line_no=1, product_id=product, warehouse_id=north, requested=1, available=0
        )
    ]
    assert level(engine, product, main).reserved == 0


def test_lines_naming_a_warehouse_are_served_before_flexible_ones(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 5, north: 5})
    # Served in order, line 1 would take main's 5 (lowest id on a tie) and starve line 2.
    response = reserve(client, service_headers, body(line(product, 5), line(product, 5, main)))
    assert response.status_code == 201, response.text
    assert allocated(response.json()) == [(1, product, north, 5), (2, product, main, 5)]


def test_stock_in_an_inactive_warehouse_is_not_used(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    closed = create_warehouse(engine)
    product = create_product(engine, stock={main: 2, closed: 10})
    with make_sessionmaker(engine)() as session:
        session.get_one(Warehouse, closed).is_active = False
        session.commit()
    anywhere = reserve(client, service_headers, body(line(product, 5)))
    assert anywhere.status_code == 409
    assert anywhere.json()["lines"][0]["available"] == 2
    named = reserve(client, service_headers, body(line(product, 1), line(product, 1, closed)))
    assert named.status_code == 409
    assert named.json()["error"] == "invalid_state"
    assert named.json()["lines"] == [{"line_no": 2, "warehouse_id": closed, "reason": "inactive"}]
    assert level(engine, product, closed).reserved == 0
    assert level(engine, product, main).reserved == 0


def test_unknown_product_or_warehouse_is_404_naming_the_line(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 5})
    response = reserve(client, service_headers, body(line(product, 1), line(999_999, 1)))
    assert response.status_code == 404
    assert response.json()["lines"] == [{"line_no": 2, "product_id": 999_999}]
    assert "line 2" in response.json()["detail"]
    response = reserve(client, service_headers, body(line(product, 1, 999_998)))
    assert response.status_code == 404
    assert response.json()["lines"] == [{"line_no": 1, "warehouse_id": 999_998}]
    assert level(engine, product, main).reserved == 0
    assert reservation_count(engine) == 0


def test_products_not_on_sale_cannot_be_reserved(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    active = create_product(engine, stock={main: 5})
    draft = create_product(engine, stock={main: 5}, status=ProductStatus.DRAFT)
    inactive = create_product(engine, stock={main: 5}, status=ProductStatus.INACTIVE)
    archived = create_product(engine, stock={main: 5}, archived=True)
    response = reserve(
        client,
        service_headers,
        body(line(active, 1), line(draft, 1), line(inactive, 1), line(archived, 1)),
    )
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_state"
    assert [(x["line_no"], x["reason"]) for x in response.json()["lines"]] == [
        (2, "draft"),
        (3, "inactive"),
        (4, "archived"),
    ]
    assert level(engine, active, main).reserved == 0


def test_invalid_requests_are_422(
    client: TestClient, engine: Engine, manager_headers: dict, service_headers: dict
) -> None:
    for payload in (
        {"idempotency_key": "x", "lines": []},
        {"idempotency_key": "", "lines": [line(1, 1)]},
        {"idempotency_key": "x", "lines": [line(1, 0)]},
        {"idempotency_key": "x", "lines": [line(1, 1)], "ttl_seconds": 0},
    ):
        response = reserve(client, service_headers, payload)
        assert response.status_code == 422, payload
        assert response.json()["error"] == "validation_error"
    assert reservation_count(engine) == 0


def test_only_the_sales_service_holds_stock_and_everyone_signed_in_reads(
    client: TestClient,
    engine: Engine,
    main: int,
    manager_headers: dict,
    service_headers: dict,
    viewer_headers: dict,
    admin_headers: dict,
) -> None:
    """The defect: a manager's reserve + commit removed stock as `sale` movements with no
    sale behind them. No person's token, an admin's included, may reserve, commit or release."""
    product = create_product(engine, stock={main: 5})
    for person in (viewer_headers, manager_headers, admin_headers):
        refused = reserve(client, person, body(line(product, 1)))
        assert refused.status_code == 403
        assert "service" in refused.json()["detail"]
    assert client.post(RESERVATIONS_PATH, json=body(line(product, 1))).status_code == 401
    made = reserve(client, service_headers, body(line(product, 1)))
    assert made.status_code == 201
    path = f"{RESERVATIONS_PATH}/{made.json()['id']}"
    for action in ("commit", "release"):
        for person in (viewer_headers, manager_headers, admin_headers):
            answer = client.post(f"{path}/{action}", json=COMMIT, headers=person)
            assert answer.status_code == 403
        assert client.post(f"{path}/{action}", json=COMMIT).status_code == 401
    assert client.get(path, headers=viewer_headers).status_code == 200
    assert client.get(path).status_code == 401
    assert level(engine, product, main) == (5, 1)
    assert movements(engine, product, MovementType.SALE) == []


def test_a_commit_names_its_sale(
    client: TestClient, engine: Engine, main: int, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 5})
    made = reserve(client, service_headers, body(line(product, 2), reference="cart-7"))
    path = f"{RESERVATIONS_PATH}/{made.json()['id']}/commit"
    for unnamed in (None, {}, {"sale_reference": ""}, {"sale_reference": "   "}):
        answer = client.post(path, json=unnamed, headers=service_headers)
        assert answer.status_code == 422, unnamed
    assert level(engine, product, main) == (5, 2)
    sold = client.post(path, json={"sale_reference": "S-77"}, headers=service_headers)
    assert sold.status_code == 200
    assert sold.json()["reference"] == "S-77"
    (movement,) = movements(engine, product, MovementType.SALE)
    assert movement.reference == "S-77" and "sale S-77" in movement.reason
    other = client.post(path, json={"sale_reference": "S-78"}, headers=service_headers)
    assert other.status_code == 409
    assert "S-77" in other.json()["detail"]
    assert level(engine, product, main) == (3, 0)


# --- commit -----------------------------------------------------------------------------


def test_commit_sells_the_held_stock_once(
    client: TestClient,
    engine: Engine,
    main: int,
    manager_headers: dict,
    service_headers: dict,
    users: dict[Role, User],
) -> None:
    north = create_warehouse(engine)
    a = create_product(engine, stock={main: 3, north: 5})
    b = create_product(engine, stock={main: 4})
    made = reserve(
        client,
        service_headers,
        body(line(a, 7), line(b, 4), reference="S-9", actor_id=users[Role.MANAGER].id),
    )
    reservation_id = made.json()["id"]
    commit = client.post(
        f"{RESERVATIONS_PATH}/{reservation_id}/commit",
        json={**COMMIT, "actor_id": users[Role.MANAGER].id},
        headers=service_headers,
    )
    assert commit.status_code == 200, commit.text
    assert commit.json()["status"] == "committed"
    assert commit.json()["lines"] == made.json()["lines"]
    assert level(engine, a, main) == (1, 0)
    assert level(engine, a, north) == (0, 0)
    assert level(engine, b, main) == (0, 0)
    sales = movements(engine, a, MovementType.SALE) + movements(engine, b, MovementType.SALE)
    assert sorted((m.product_id, m.warehouse_id, m.quantity) for m in sales) == sorted(
        [(a, main, -2), (a, north, -5), (b, main, -4)]
    )
    assert {(m.reference, m.actor_id) for m in sales} == {("S-9", users[Role.MANAGER].id)}

    again = client.post(
        f"{RESERVATIONS_PATH}/{reservation_id}/commit", json=COMMIT, headers=service_headers
    )
    assert again.status_code == 200
    assert again.json() == commit.json()
    assert len(movements(engine, a, MovementType.SALE)) == 2
    # a retried reserve still answers with the reservation, now committed, and holds nothing
    retry = reserve(
        client,
        service_headers,
        body(
            line(a, 7),
            line(b, 4),
            reference="S-9",
            actor_id=users[Role.MANAGER].id,
            key=made.json()["idempotency_key"],
        ),
    )
    assert retry.status_code == 200
    assert retry.json()["status"] == "committed"
    assert ledger_problems(engine) == []


def test_unknown_reservation_is_404(
    client: TestClient, manager_headers: dict, service_headers: dict
) -> None:
    path = f"{RESERVATIONS_PATH}/987654"
    assert client.get(path, headers=manager_headers).status_code == 404
    for action in ("commit", "release"):
        response = client.post(f"{path}/{action}", json=COMMIT, headers=service_headers)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


# --- release ----------------------------------------------------------------------------


def test_release_returns_the_stock_and_is_harmless_when_repeated(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 5})
    reservation_id = reserve(client, service_headers, body(line(product, 5))).json()["id"]
    assert level(engine, product, main).available == 0
    path = f"{RESERVATIONS_PATH}/{reservation_id}"
    first = client.post(f"{path}/release", headers=service_headers)
    assert first.status_code == 200
    assert first.json()["status"] == "released"
    assert level(engine, product, main) == (5, 0)
    second = client.post(f"{path}/release", headers=service_headers)
    assert second.status_code == 200
    assert second.json() == first.json()
    assert level(engine, product, main) == (5, 0)

    commit = client.post(f"{path}/commit", json=COMMIT, headers=service_headers)
    assert commit.status_code == 409
    assert commit.json()["error"] == "invalid_state"
    assert level(engine, product, main) == (5, 0)
    assert movements(engine, product, MovementType.SALE) == []
    assert ledger_problems(engine) == []


def test_a_committed_reservation_cannot_be_released(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 5})
    reservation_id = reserve(client, service_headers, body(line(product, 2))).json()["id"]
    path = f"{RESERVATIONS_PATH}/{reservation_id}"
    assert client.post(f"{path}/commit", json=COMMIT, headers=service_headers).status_code == 200
    response = client.post(f"{path}/release", headers=service_headers)
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_state"
    assert level(engine, product, main) == (3, 0)


# --- reads ------------------------------------------------------------------------------


def test_list_filters_by_status_and_reference(
    client: TestClient,
    engine: Engine,
    main: int,
    manager_headers: dict,
    service_headers: dict,
    viewer_headers: dict,
) -> None:
    product = create_product(engine, stock={main: 10})
    ids = [
        reserve(client, service_headers, body(line(product, 1), reference=f"R{i}")).json()["id"]
        for i in range(3)
    ]
    client.post(f"{RESERVATIONS_PATH}/{ids[0]}/release", headers=service_headers)
    everything = client.get(RESERVATIONS_PATH, headers=viewer_headers).json()
    assert everything["total"] == 3
    assert [r["id"] for r in everything["items"]] == list(reversed(ids))
    active = client.get(RESERVATIONS_PATH, params={"status": "active"}, headers=viewer_headers)
    assert [r["id"] for r in active.json()["items"]] == [ids[2], ids[1]]
    released = client.get(
        RESERVATIONS_PATH, params={"status": "released", "sort": "id"}, headers=viewer_headers
    )
    assert [r["id"] for r in released.json()["items"]] == [ids[0]]
    either = {"status": ["released", "active"], "sort": "id"}
    both = client.get(RESERVATIONS_PATH, params=either, headers=viewer_headers).json()
    assert [r["id"] for r in both["items"]] == ids and both["total"] == 3
    by_ref = client.get(RESERVATIONS_PATH, params={"reference": "R1"}, headers=viewer_headers)
    assert [r["id"] for r in by_ref.json()["items"]] == [ids[1]]
    paged = client.get(
        RESERVATIONS_PATH, params={"limit": 1, "offset": 1, "sort": "id"}, headers=viewer_headers
    )
    assert paged.json()["total"] == 3
    assert [r["id"] for r in paged.json()["items"]] == [ids[1]]
    bad = client.get(RESERVATIONS_PATH, params={"status": "nope"}, headers=viewer_headers)
    assert bad.status_code == 422
    assert (
        client.get(RESERVATIONS_PATH, params={"sort": "x"}, headers=viewer_headers).status_code
        == 400
    )


# --- expiry -----------------------------------------------------------------------------


def test_expiry_returns_stock_only_of_reservations_past_due(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 10})
    short = reserve(client, service_headers, body(line(product, 2), ttl_seconds=600)).json()
    long = reserve(client, service_headers, body(line(product, 3), ttl_seconds=3000)).json()
    gone = reserve(client, service_headers, body(line(product, 1), ttl_seconds=600)).json()
    client.post(f"{RESERVATIONS_PATH}/{gone['id']}/release", headers=service_headers)
    sessions = make_sessionmaker(engine)
    later = utcnow() + timedelta(seconds=1200)
    assert expire_due_reservations(sessions=sessions, now=later) == 1
    assert expire_due_reservations(sessions=sessions, now=later) == 0
    assert reservation_status(engine, short["id"]) is ReservationStatus.EXPIRED
    assert reservation_status(engine, long["id"]) is ReservationStatus.ACTIVE
    assert reservation_status(engine, gone["id"]) is ReservationStatus.RELEASED
    assert level(engine, product, main) == (10, 3)
    # releasing an expired reservation is harmless
    release = client.post(f"{RESERVATIONS_PATH}/{short['id']}/release", headers=service_headers)
    assert release.status_code == 200
    assert release.json()["status"] == "expired"
    assert level(engine, product, main) == (10, 3)
    assert ledger_problems(engine) == []


def _expire_now(engine: Engine, reservation_id: int) -> None:
    set_reservation_expiry(engine, reservation_id, utcnow() - timedelta(seconds=1))
    expire_due_reservations(sessions=make_sessionmaker(engine))
    assert reservation_status(engine, reservation_id) is ReservationStatus.EXPIRED


def test_commit_after_expiry_takes_the_stock_again_when_it_is_still_free(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 4, north: 4})
    reservation_id = reserve(client, service_headers, body(line(product, 6))).json()["id"]
    _expire_now(engine, reservation_id)
    assert level(engine, product, main).reserved == level(engine, product, north).reserved == 0
    response = client.post(
        f"{RESERVATIONS_PATH}/{reservation_id}/commit", json=COMMIT, headers=service_headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "committed"
    assert level(engine, product, main).on_hand + level(engine, product, north).on_hand == 2
    assert sum(m.quantity for m in movements(engine, product, MovementType.SALE)) == -6
    assert ledger_problems(engine) == []


def test_commit_after_expiry_fails_when_the_stock_was_taken(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 5})
    reservation_id = reserve(client, service_headers, body(line(product, 5))).json()["id"]
    _expire_now(engine, reservation_id)
    assert reserve(client, service_headers, body(line(product, 3))).status_code == 201
    response = client.post(
        f"{RESERVATIONS_PATH}/{reservation_id}/commit", json=COMMIT, headers=service_headers
    )
    assert response.status_code == 409
    assert response.json()["error"] == "insufficient_stock"
    assert response.json()["lines"] == [
        short_line(
            engine, line_no=1, product_id=product, warehouse_id=main, requested=5, available=2
        )
    ]
    assert reservation_status(engine, reservation_id) is ReservationStatus.EXPIRED
    assert level(engine, product, main) == (5, 3)
    assert movements(engine, product, MovementType.SALE) == []
    assert ledger_problems(engine) == []


def test_an_active_reservation_past_its_expiry_is_committed_as_held(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    product = create_product(engine, stock={main: 5})
    reservation_id = reserve(client, service_headers, body(line(product, 5))).json()["id"]
    set_reservation_expiry(engine, reservation_id, utcnow() - timedelta(seconds=5))
    response = client.post(
        f"{RESERVATIONS_PATH}/{reservation_id}/commit", json=COMMIT, headers=service_headers
    )
    assert response.status_code == 200, response.text
    assert level(engine, product, main) == (0, 0)
    assert len(movements(engine, product, MovementType.SALE)) == 1
    # the sweeper finds nothing left to do
    assert expire_due_reservations(sessions=make_sessionmaker(engine)) == 0
    assert reservation_status(engine, reservation_id) is ReservationStatus.COMMITTED
    assert ledger_problems(engine) == []


def test_two_sweepers_at_once_expire_each_reservation_once(
    client: TestClient, engine: Engine, main: int, manager_headers: dict, service_headers: dict
) -> None:
    products = [create_product(engine, stock={main: 100}) for _ in range(3)]
    for i in range(30):
        payload = body(*(line(p, 1 + (i + n) % 3) for n, p in enumerate(products)), ttl_seconds=600)
        assert reserve(client, service_headers, payload).status_code == 201
    held = [level(engine, p, main).reserved for p in products]
    assert sum(held) == 30 * 6
    sessions = make_sessionmaker(engine)
    later = utcnow() + timedelta(seconds=900)
    start = threading.Barrier(2)
    counts: list[int] = []

    def sweep() -> None:
        start.wait()
        counts.append(expire_due_reservations(sessions=sessions, now=later))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(counts) == 30
    assert [level(engine, p, main) for p in products] == [(100, 0)] * 3
    with make_sessionmaker(engine)() as session:
        statuses = set(session.scalars(select(Reservation.status)))
    assert statuses == {ReservationStatus.EXPIRED}
    assert ledger_problems(engine) == []


def test_a_sweeper_working_from_a_stale_list_expires_nothing_twice(
    client: TestClient,
    engine: Engine,
    main: int,
    manager_headers: dict,
    service_headers: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product = create_product(engine, stock={main: 20})
    due = [
        reserve(client, service_headers, body(line(product, 2), ttl_seconds=600)).json()["id"]
        for _ in range(3)
    ]
    # Stock still held by a reservation that is not due: a second return would eat into it.
    assert (
        reserve(client, service_headers, body(line(product, 6), ttl_seconds=3000)).status_code
        == 201
    )
    sessions = make_sessionmaker(engine)
    later = utcnow() + timedelta(seconds=900)
    listed, first_done = threading.Event(), threading.Event()
    fresh_listing = repository.due_reservation_ids

    def list_then_stall(session: Session, **kwargs: Any) -> list[int]:
        ids = fresh_listing(session, **kwargs)
        if threading.current_thread().name == "late" and ids:
            listed.set()
            first_done.wait(timeout=30)
        return ids

    monkeypatch.setattr(repository, "due_reservation_ids", list_then_stall)
    late_count: list[int] = []
    late = threading.Thread(
        name="late",
        target=lambda: late_count.append(expire_due_reservations(sessions=sessions, now=later)),
    )
    late.start()
    assert listed.wait(timeout=30)
    assert expire_due_reservations(sessions=sessions, now=later) == 3
    first_done.set()
    late.join(timeout=30)
    assert late_count == [0]
    assert level(engine, product, main) == (20, 6)
    assert {reservation_status(engine, i) for i in due} == {ReservationStatus.EXPIRED}
    assert ledger_problems(engine) == []


# --- allocation rules (no database) -----------------------------------------------------


def test_allocation_of_an_exactly_fitting_mix() -> None:
    available = {(1, 10): 4, (1, 20): 6, (2, 10): 1}
    demands = [Demand(1, 1, None, 7), Demand(2, 2, 10, 1), Demand(3, 1, 10, 3)]
    allocations, shorts = allocate(demands, available)
    assert shorts == []
    assert [(a.line_no, a.product_id, a.warehouse_id, a.quantity) for a in allocations] == [
        (1, 1, 10, 1),
        (1, 1, 20, 6),
        (2, 2, 10, 1),
        (3, 1, 10, 3),
    ]


def test_a_short_line_takes_what_is_left_so_later_lines_report_the_rest() -> None:
    available = {(1, 10): 4}
    _, shorts = allocate([Demand(1, 1, None, 6), Demand(2, 1, None, 1)], available)
    assert [(s.line_no, s.available) for s in shorts] == [(1, 4), (2, 0)]
