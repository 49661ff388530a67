"""The category tree through the HTTP API: slugs, paths, lookups, moves and archiving."""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.products_service.factories import API, make_category, make_product


def field_names(response: Any) -> list[str]:
    return [f["field"] for f in response.json()["fields"]]


def skus_in(client: TestClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = client.get(f"{API}/products", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [p["sku"] for p in response.json()["items"]]


def test_slug_is_derived_from_the_name_and_path_follows_the_tree(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    root = make_category(client, manager_headers, "  Café & Crème Brûlée  ")
    assert root["name"] == "Café & Crème Brûlée"
    assert root["slug"] == "cafe-creme-brulee"
    assert root["parent_id"] is None
    assert root["path"] == f"/{root['id']}/"
    assert root["archived_at"] is None
    assert root["created_at"].endswith(("+00:00", "Z"))

    child = make_category(client, manager_headers, "Mugs", parent_id=root["id"])
    grandchild = make_category(client, manager_headers, "Tall mugs", parent_id=child["id"])
    assert child["path"] == f"/{root['id']}/{child['id']}/"
    assert grandchild["path"] == f"/{root['id']}/{child['id']}/{grandchild['id']}/"


def test_slug_rules_and_duplicates(client: TestClient, manager_headers: dict[str, str]) -> None:
    make_category(client, manager_headers, "Shoes", slug="running-shoes")

    duplicate = client.post(
        f"{API}/categories",
        json={"name": "Other", "slug": "running-shoes"},
        headers=manager_headers,
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["fields"][0]["field"] == "body.slug"

    derived_duplicate = client.post(
        f"{API}/categories", json={"name": "Running Shoes!"}, headers=manager_headers
    )
    assert derived_duplicate.status_code == 409
    assert derived_duplicate.json()["fields"][0]["field"] == "body.slug"

    for bad in ("Running Shoes", "shoes--x", "-shoes", "sh_oes", "2024"):
        response = client.post(
            f"{API}/categories", json={"name": "X", "slug": bad}, headers=manager_headers
        )
        assert response.status_code == 422, bad
        assert field_names(response) == ["body.slug"], bad

    underivable = client.post(f"{API}/categories", json={"name": "日本"}, headers=manager_headers)
    assert underivable.status_code == 422
    assert underivable.json()["fields"][0]["field"] == "body.slug"


def test_unknown_or_archived_parent_is_refused(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    unknown = client.post(
        f"{API}/categories", json={"name": "Orphan", "parent_id": 999999}, headers=manager_headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["fields"][0]["field"] == "body.parent_id"
    assert "999999" in unknown.json()["detail"]

    archived = make_category(client, manager_headers, "Old")
    client.post(f"{API}/categories/{archived['id']}/archive", headers=manager_headers)
    under_archived = client.post(
        f"{API}/categories",
        json={"name": "New", "parent_id": archived["id"]},
        headers=manager_headers,
    )
    assert under_archived.status_code == 422
    assert under_archived.json()["fields"][0]["field"] == "body.parent_id"


def test_lookup_by_id_or_slug_gives_ancestors_and_active_children(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    root = make_category(client, manager_headers, "Home")
    kitchen = make_category(client, manager_headers, "Kitchen", parent_id=root["id"])
    garden = make_category(client, manager_headers, "Garden", parent_id=root["id"])
    knives = make_category(client, manager_headers, "Knives", parent_id=kitchen["id"])
    client.post(f"{API}/categories/{garden['id']}/archive", headers=manager_headers)

    by_slug = client.get(f"{API}/categories/knives", headers=viewer_headers)
    assert by_slug.status_code == 200, by_slug.text
    assert by_slug.json()["id"] == knives["id"]
    assert [a["slug"] for a in by_slug.json()["ancestors"]] == ["home", "kitchen"]
    assert by_slug.json()["children"] == []

    by_id = client.get(f"{API}/categories/{root['id']}", headers=viewer_headers)
    assert by_id.json()["slug"] == "home"
    assert by_id.json()["ancestors"] == []
    assert by_id.json()["children"] == [{"id": kitchen["id"], "name": "Kitchen", "slug": "kitchen"}]

    # Archived categories are still found by id.
    archived = client.get(f"{API}/categories/{garden['id']}", headers=viewer_headers)
    assert archived.status_code == 200
    assert archived.json()["archived_at"] is not None


def test_unknown_category_is_404(
    client: TestClient, viewer_headers: dict[str, str], manager_headers: dict[str, str]
) -> None:
    for key in ("999999", "no-such-slug"):
        response = client.get(f"{API}/categories/{key}", headers=viewer_headers)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    for method, path, body in (
        ("PATCH", "/categories/999999", {"name": "x"}),
        ("POST", "/categories/999999/archive", None),
        ("POST", "/categories/999999/restore", None),
    ):
        response = client.request(method, f"{API}{path}", json=body, headers=manager_headers)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_list_pages_sorts_and_filters(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    root = make_category(client, manager_headers, "Root")
    for name in ("Delta", "alpha", "Charlie", "Bravo"):
        make_category(client, manager_headers, name, parent_id=root["id"])
    hidden = make_category(client, manager_headers, "Echo", parent_id=root["id"])
    client.post(f"{API}/categories/{hidden['id']}/archive", headers=manager_headers)

    def names(**params: Any) -> tuple[list[str], int]:
        response = client.get(f"{API}/categories", params=params, headers=viewer_headers)
        assert response.status_code == 200, response.text
        return [c["name"] for c in response.json()["items"]], response.json()["total"]

    assert names(parent_id=root["id"]) == (["alpha", "Bravo", "Charlie", "Delta"], 4)
    assert names(parent_id=root["id"], sort="-name", limit=2) == (["Delta", "Charlie"], 4)
    assert names(parent_id=root["id"], sort="-name", limit=2, offset=2) == (["Bravo", "alpha"], 4)
    assert names(parent_id=root["id"], sort="-created_at", limit=1) == (["Bravo"], 4)
    assert names(parent_id=root["id"], include_archived=True)[1] == 5
    assert names(q="HAR") == (["Charlie"], 1)
    assert names() == (["alpha", "Bravo", "Charlie", "Delta", "Root"], 5)

    bad_sort = client.get(f"{API}/categories", params={"sort": "price"}, headers=viewer_headers)
    assert bad_sort.status_code == 400
    assert "name" in bad_sort.json()["detail"]


def test_moving_a_category_rewrites_its_subtree(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    clothing = make_category(client, manager_headers, "Clothing")
    shoes = make_category(client, manager_headers, "Shoes", parent_id=clothing["id"])
    trail = make_category(client, manager_headers, "Trail", parent_id=shoes["id"])
    sports = make_category(client, manager_headers, "Sports")
    make_product(client, manager_headers, "TRAIL-1", category_id=trail["id"])

    assert skus_in(client, viewer_headers, category_id=clothing["id"]) == ["TRAIL-1"]
    assert skus_in(client, viewer_headers, category_id=sports["id"]) == []

    moved = client.patch(
        f"{API}/categories/{shoes['id']}",
        json={"parent_id": sports["id"], "name": "Sport shoes"},
        headers=manager_headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["path"] == f"/{sports['id']}/{shoes['id']}/"
    assert moved.json()["name"] == "Sport shoes"
    assert moved.json()["slug"] == "shoes"

    leaf = client.get(f"{API}/categories/{trail['id']}", headers=viewer_headers).json()
    assert leaf["path"] == f"/{sports['id']}/{shoes['id']}/{trail['id']}/"
    assert [a["id"] for a in leaf["ancestors"]] == [sports["id"], shoes["id"]]
    assert skus_in(client, viewer_headers, category_id=sports["id"]) == ["TRAIL-1"]
    assert skus_in(client, viewer_headers, category_id=clothing["id"]) == []

    to_top = client.patch(
        f"{API}/categories/{shoes['id']}", json={"parent_id": None}, headers=manager_headers
    )
    assert to_top.json()["parent_id"] is None
    leaf = client.get(f"{API}/categories/{trail['id']}", headers=viewer_headers).json()
    assert leaf["path"] == f"/{shoes['id']}/{trail['id']}/"


def test_moving_under_itself_or_a_descendant_is_refused(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    a = make_category(client, manager_headers, "A")
    b = make_category(client, manager_headers, "B", parent_id=a["id"])
    c = make_category(client, manager_headers, "C", parent_id=b["id"])

    for target in (a["id"], c["id"], b["id"]):
        response = client.patch(
            f"{API}/categories/{a['id']}", json={"parent_id": target}, headers=manager_headers
        )
        assert response.status_code == 409, target
        assert response.json()["fields"][0]["field"] == "body.parent_id"
    cycle = client.patch(
        f"{API}/categories/{a['id']}", json={"parent_id": c["id"]}, headers=manager_headers
    )
    assert "cycle" in cycle.json()["detail"]

    unchanged = client.get(f"{API}/categories/{c['id']}", headers=viewer_headers).json()
    assert unchanged["path"] == f"/{a['id']}/{b['id']}/{c['id']}/"


def test_patch_changes_only_what_is_sent(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    make_category(client, manager_headers, "Taken")
    cat = make_category(client, manager_headers, "Books", description="Paper")

    renamed = client.patch(
        f"{API}/categories/{cat['id']}", json={"slug": "printed-books"}, headers=manager_headers
    )
    assert renamed.status_code == 200
    assert renamed.json()["slug"] == "printed-books"
    assert renamed.json()["name"] == "Books"
    assert renamed.json()["description"] == "Paper"

    taken = client.patch(
        f"{API}/categories/{cat['id']}", json={"slug": "taken"}, headers=manager_headers
    )
    assert taken.status_code == 409
    assert taken.json()["fields"][0]["field"] == "body.slug"

    null_name = client.patch(
        f"{API}/categories/{cat['id']}", json={"name": None}, headers=manager_headers
    )
    assert null_name.status_code == 422
    assert field_names(null_name) == ["body.name"]


def test_archive_and_restore_follow_the_tree(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    parent = make_category(client, manager_headers, "Parent")
    child = make_category(client, manager_headers, "Child", parent_id=parent["id"])
    product = make_product(client, manager_headers, "P-1", category_id=child["id"])

    def archive(cat_id: int) -> Any:
        return client.post(f"{API}/categories/{cat_id}/archive", headers=manager_headers)

    def restore(cat_id: int) -> Any:
        return client.post(f"{API}/categories/{cat_id}/restore", headers=manager_headers)

    blocked_by_child = archive(parent["id"])
    assert blocked_by_child.status_code == 409
    assert "subcategories" in blocked_by_child.json()["detail"]

    blocked_by_product = archive(child["id"])
    assert blocked_by_product.status_code == 409
    assert blocked_by_product.json()["active_products"] == 1

    client.post(f"{API}/products/{product['id']}/archive", headers=manager_headers)
    assert archive(child["id"]).status_code == 200
    archived = archive(parent["id"])
    assert archived.status_code == 200
    assert archived.json()["archived_at"] is not None
    assert archive(parent["id"]).json()["archived_at"] == archived.json()["archived_at"]

    listed = client.get(f"{API}/categories", headers=viewer_headers).json()
    assert listed["total"] == 0
    everything = client.get(
        f"{API}/categories", params={"include_archived": True}, headers=viewer_headers
    ).json()
    assert everything["total"] == 2

    child_first = restore(child["id"])
    assert child_first.status_code == 409
    assert "Parent" in child_first.json()["detail"] or "parent" in child_first.json()["detail"]
    assert restore(parent["id"]).json()["archived_at"] is None
    assert restore(child["id"]).json()["archived_at"] is None
    assert client.get(f"{API}/categories", headers=viewer_headers).json()["total"] == 2


def test_reads_need_a_user_and_writes_need_a_manager(
    client: TestClient, viewer_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    assert client.get(f"{API}/categories").status_code == 401
    assert client.get(f"{API}/categories", headers=viewer_headers).status_code == 200
    denied = client.post(f"{API}/categories", json={"name": "X"}, headers=viewer_headers)
    assert denied.status_code == 403
    allowed = client.post(f"{API}/categories", json={"name": "X"}, headers=admin_headers)
    assert allowed.status_code == 201


@pytest.mark.live
def test_crossing_moves_in_parallel_never_make_a_cycle(
    live_products: Any, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    barrier = threading.Barrier(2)  # reusable: both moves of a round start together

    with httpx.Client(base_url=f"{live_products.url}{API}", timeout=30) as http:

        def move(child: int, parent: int) -> int:
            barrier.wait()
            response = http.patch(
                f"/categories/{child}", json={"parent_id": parent}, headers=manager_headers
            )
            return response.status_code

        for round_no in range(5):
            a = http.post(
                "/categories", json={"name": f"A{round_no}"}, headers=manager_headers
            ).json()
            b = http.post(
                "/categories", json={"name": f"B{round_no}"}, headers=manager_headers
            ).json()
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(move, (a["id"], b["id"]), (b["id"], a["id"])))
            assert results.count(200) == 1, results
            assert set(results) <= {200, 409}, results

            fresh = {
                c["id"]: c
                for c in http.get(
                    "/categories", params={"q": str(round_no)}, headers=viewer_headers
                ).json()["items"]
            }
            assert len(fresh) == 2
            for category in fresh.values():
                parent = fresh.get(category["parent_id"]) if category["parent_id"] else None
                expected = f"{parent['path'] if parent else '/'}{category['id']}/"
                assert category["path"] == expected


def test_the_tree_nests_every_category_under_its_parent_with_full_names(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    sports = make_category(client, manager_headers, "Sports")
    running = make_category(client, manager_headers, "Running", parent_id=sports["id"])
    trail = make_category(client, manager_headers, "trail shoes", parent_id=running["id"])
    make_category(client, manager_headers, "Cycling", parent_id=sports["id"])
    books = make_category(client, manager_headers, "Books")
    old = make_category(client, manager_headers, "Old stock", parent_id=books["id"])
    client.post(f"{API}/categories/{old['id']}/archive", headers=manager_headers)

    answer = client.get(f"{API}/categories/tree", headers=viewer_headers)
    assert answer.status_code == 200, answer.text

    def shape(nodes: list[dict[str, Any]]) -> list[Any]:
        return [(n["full_name"], shape(n["children"])) for n in nodes]

    assert shape(answer.json()) == [
        ("Books", []),  # its archived subcategory is left out
        (
            "Sports",
            [
                ("Sports / Cycling", []),
                ("Sports / Running", [("Sports / Running / trail shoes", [])]),
            ],
        ),
    ]
    everything = client.get(
        f"{API}/categories/tree", params={"include_archived": True}, headers=viewer_headers
    ).json()
    assert [c["full_name"] for c in everything[0]["children"]] == ["Books / Old stock"]
    assert everything[0]["children"][0]["archived_at"] is not None

    # each category read says its full name too, and a list can ask for the roots only
    read = client.get(f"{API}/categories/{trail['id']}", headers=viewer_headers).json()
    assert read["full_name"] == "Sports / Running / trail shoes"
    listed = client.get(f"{API}/categories", params={"q": "trail"}, headers=viewer_headers)
    assert [c["full_name"] for c in listed.json()["items"]] == ["Sports / Running / trail shoes"]
    moved = client.patch(
        f"{API}/categories/{trail['id']}", json={"parent_id": books["id"]}, headers=manager_headers
    )
    assert moved.json()["full_name"] == "Books / trail shoes"
    roots = client.get(f"{API}/categories", params={"top_level": True}, headers=viewer_headers)
    assert [c["name"] for c in roots.json()["items"]] == ["Books", "Sports"]
    both = client.get(
        f"{API}/categories",
        params={"top_level": True, "parent_id": books["id"]},
        headers=viewer_headers,
    )
    assert both.status_code == 422 and both.json()["fields"][0]["field"] == "query.top_level"


def test_the_tree_route_is_read_only_and_says_so(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    for method in ("PATCH", "PUT", "POST", "DELETE"):
        answer = client.request(
            method,
            f"{API}/categories/tree",
            params={"include_archived": "true"},
            json={"name": "x"},
            headers=manager_headers,
        )
        assert answer.status_code == 405, (method, answer.text)
        assert answer.headers["allow"] == "GET"
