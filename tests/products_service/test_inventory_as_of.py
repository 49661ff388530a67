"""Stock levels at a past moment (``GET /inventory/levels?as_of=``), from the ledger, over HTTP.

The moments are the real clock read between API calls: every movement a call writes is
stamped after the moment read before it and before the one read after it.
"""

from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from common.db import make_sessionmaker, utcnow
from common.models import Product
from tests.products_service.test_inventory import (
    API,
    main_warehouse,
    make_product,
    make_warehouse,
    post,
    receive,
    sell,
    set_reserved,
)

Row = tuple[int, int, int]  # (product_id, warehouse_id, on_hand)


def sku_of(engine: Engine, product_id: int) -> str:
    with make_sessionmaker(engine)() as session:
        return session.get_one(Product, product_id).sku


def levels_page(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    if isinstance(params.get("as_of"), datetime):
        params["as_of"] = params["as_of"].isoformat()
    response = client.get(f"{API}/levels", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def rows(client: TestClient, headers: dict[str, str], **params: Any) -> tuple[list[Row], int]:
    page = levels_page(client, headers, **params)
    return [(i["product_id"], i["warehouse_id"], i["on_hand"]) for i in page["items"]], page[
        "total"
    ]


def test_levels_as_of_each_moment_are_the_ledger_up_to_it(
    client: TestClient,
    engine: Engine,
    manager_headers: dict,
    viewer_headers: dict,
    service_headers: dict,
) -> None:
    main = main_warehouse(engine)
    spare = make_warehouse(engine, "SPARE")
    before_any = utcnow()
    shoe = make_product(engine)

    receive(client, manager_headers, shoe, main, 10)
    after_receipt = utcnow()
    spare_receipt = receive(client, manager_headers, shoe, spare, 4)
    after_second_receipt = utcnow()
    sell(client, service_headers, "sale-as-of-1", shoe, 3)  # from MAIN, which has the most
    after_sale = utcnow()
    adjusted = post(
        client,
        manager_headers,
        "/adjustments",
        {"product_id": shoe, "warehouse_id": main, "quantity": -2, "reason": "broken seal"},
    )
    assert adjusted.status_code == 201, adjusted.text
    after_adjustment = utcnow()
    started = post(
        client,
        manager_headers,
        "/transfers",
        {"product_id": shoe, "from_warehouse_id": main, "to_warehouse_id": spare, "quantity": 3},
    )
    assert started.status_code == 201, started.text
    in_transit = utcnow()
    completed = post(client, manager_headers, f"/transfers/{started.json()['id']}/complete")
    assert completed.status_code == 200, completed.text
    after_transfer = utcnow()
    counted = post(
        client,
        manager_headers,
        "/counts",
        {"product_id": shoe, "warehouse_id": spare, "counted_quantity": 6},
    )
    assert counted.status_code == 201, counted.text
    sock = make_product(engine)
    receive(client, manager_headers, sock, main, 1)

    def at(moment: datetime, **params: Any) -> tuple[list[Row], int]:
        return rows(client, viewer_headers, as_of=moment, **params)

    assert at(before_any) == ([], 0)  # before the product existed: no row
    assert at(after_receipt) == ([(shoe, main, 10)], 1)
    assert at(after_second_receipt) == ([(shoe, main, 10), (shoe, spare, 4)], 2)
    assert at(after_sale) == ([(shoe, main, 7), (shoe, spare, 4)], 2)
    assert at(after_adjustment) == ([(shoe, main, 5), (shoe, spare, 4)], 2)
    assert at(in_transit) == ([(shoe, main, 2), (shoe, spare, 4)], 2)  # on no shelf
    assert at(after_transfer) == ([(shoe, main, 2), (shoe, spare, 7)], 2)
    assert at(utcnow()) == ([(shoe, main, 2), (shoe, spare, 6), (sock, main, 1)], 3)

    # the same moment in another offset is the same instant
    plus_one = timezone(timedelta(hours=1))
    assert at(after_sale.astimezone(plus_one)) == at(after_sale)
    # filters, sorting and paging work on the past as on the present
    assert at(after_transfer, warehouse_id=spare) == ([(shoe, spare, 7)], 1)
    assert at(after_transfer, product_id=sock) == ([], 0)
    assert at(after_transfer, sort="-on_hand") == ([(shoe, spare, 7), (shoe, main, 2)], 2)
    assert at(after_transfer, sort="-warehouse_id", limit=1) == ([(shoe, spare, 7)], 2)
    assert at(after_transfer, limit=1, offset=1) == ([(shoe, spare, 7)], 2)
    assert at(after_transfer, offset=5) == ([], 2)  # a page past the end still says the total

    # reserved is not known for the past; updated_at is the time of the last movement then
    page = levels_page(client, viewer_headers, as_of=after_second_receipt, warehouse_id=spare)
    assert page["items"] == [
        {
            "product_id": shoe,
            "sku": sku_of(engine, shoe),
            "warehouse_id": spare,
            "warehouse_code": "SPARE",
            "on_hand": 4,
            "reserved": None,
            "available": None,
            "updated_at": spare_receipt["movement"]["created_at"],
        }
    ]


def test_levels_as_of_now_equal_the_current_levels(
    client: TestClient, engine: Engine, manager_headers: dict, service_headers: dict
) -> None:
    main = main_warehouse(engine)
    north, south = make_warehouse(engine, "NORTH"), make_warehouse(engine, "SOUTH")
    products = [make_product(engine) for _ in range(4)]
    for n, product in enumerate(products):
        receive(client, manager_headers, product, main, 20 + n)
        receive(client, manager_headers, product, north, 5 + 3 * n)
    receive(client, manager_headers, products[0], south, 9)
    sell(client, service_headers, "sale-as-of-now-1", products[1], 4)
    sell(client, service_headers, "sale-as-of-now-2", products[2], 25)  # empties MAIN
    set_reserved(engine, products[3], main, 2)  # today's reserved is not the past's

    now = utcnow()
    for params in (
        {},
        {"product_id": products[0]},
        {"warehouse_id": north},
        {"sort": "-on_hand,warehouse_id"},
        {"sort": "warehouse_id,-product_id", "limit": 3, "offset": 2},
    ):
        assert rows(client, manager_headers, as_of=now, **params) == rows(
            client, manager_headers, **params
        ), params
    for item in levels_page(client, manager_headers, as_of=now)["items"]:
        assert item["reserved"] is None and item["available"] is None


def test_without_as_of_the_levels_list_answers_as_before(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product, main = make_product(engine), main_warehouse(engine)
    receive(client, manager_headers, product, main, 5)
    set_reserved(engine, product, main, 2)
    page = levels_page(client, manager_headers, sort="-available")
    [item] = page["items"]
    assert (item["on_hand"], item["reserved"], item["available"]) == (5, 2, 3)
    assert set(item) == {
        "product_id",
        "sku",
        "warehouse_id",
        "warehouse_code",
        "on_hand",
        "reserved",
        "available",
        "updated_at",
    }


def test_as_of_without_an_offset_in_the_future_or_with_an_unknowable_sort_is_422(
    client: TestClient, viewer_headers: dict
) -> None:
    def refused(params: dict[str, Any], field: str) -> str:
        answer = client.get(f"{API}/levels", params=params, headers=viewer_headers)
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert [f["field"] for f in body["fields"]] == [field], body
        return str(body["fields"][0]["reason"])

    for naive in ("2026-03-01", "2026-03-01T00:00:00", "2026-03-01T00:00"):
        assert "offset" in refused({"as_of": naive}, "query.as_of")
    assert "offset" in refused({"as_of": "1700000000"}, "query.as_of")
    refused({"as_of": "yesterday"}, "query.as_of")
    refused({"as_of": "0001-01-01T00:00:00+14:00"}, "query.as_of")

    soon = (utcnow() + timedelta(minutes=5)).isoformat()
    assert "future" in refused({"as_of": soon}, "query.as_of")
    assert "available" in refused(
        {"as_of": "2026-03-01T00:00:00+01:00", "sort": "on_hand,-available"}, "query.sort"
    )

    past = {"as_of": "2026-03-01T00:00:00Z"}
    assert client.get(f"{API}/levels", params=past, headers=viewer_headers).status_code == 200
    bad_sort = client.get(f"{API}/levels", params={**past, "sort": "price"}, headers=viewer_headers)
    assert bad_sort.status_code == 400 and "on_hand" in bad_sort.json()["detail"]
