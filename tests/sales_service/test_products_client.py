"""The client sales_service calls products_service with, against a scripted upstream: kept
connections, upstreams that drop them, the bulkhead, a base URL with a path."""

import json
import socket
import threading
import time

import pytest

from common.auth.security import ServiceCredential
from common.contracts import SALE_STOCK_PATH
from common.errors import UpstreamUnavailable
from common.settings import SalesSettings
from sales_service.clients.products import ProductsClient
from tests.scripted import scripted_receiver

RETURNED = json.dumps(
    {"key": "k", "status": "returned", "lines": [], "created_at": "2026-01-01T00:00:00Z"}
).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(RETURNED)}\r\n\r\n".encode()
    + RETURNED
)


def client(url: str, **options: float) -> ProductsClient:
    """No retries unless asked: a call that needs one shows as a failure."""
    credential = ServiceCredential("sales_service", SalesSettings())
    return ProductsClient(url, retries=0, credential=credential, **options)  # type: ignore[arg-type]


def test_calls_share_one_kept_connection() -> None:
    connections: list[socket.socket] = []

    def keep(connection: socket.socket, nth: int) -> bool:
        connections.append(connection)
        connection.sendall(ANSWER)
        return True

    with scripted_receiver(keep, path="") as url:
        products = client(url)
        for _ in range(5):
            assert products.return_sale_stock("k").status == "returned"
        products.close()
    assert len(connections) == 5 and len({id(c) for c in connections}) == 1


@pytest.mark.parametrize("noticed", [True, False], ids=["closed-while-idle", "closed-as-sent"])
def test_a_connection_the_upstream_dropped_is_replaced_not_a_failed_call(noticed: bool) -> None:
    """Servers close idle connections (uvicorn after 5 s). Whether the client sees the close
    before it sends, or only when its request finds the connection gone, the call goes
    through on a new connection, without a retry."""
    connections: list[socket.socket] = []

    def answer_then_drop(connection: socket.socket, nth: int) -> bool:
        connections.append(connection)
        if noticed:  # answered, then closed: the close arrives while the connection is idle
            connection.sendall(ANSWER)
            return False
        if nth % 2 == 0:  # read, then closed unanswered: as if it closed as this was sent
            return False
        connection.sendall(ANSWER)
        return True

    with scripted_receiver(answer_then_drop, path="") as url:
        products = client(url)
        for _ in range(3):
            assert products.return_sale_stock("k").status == "returned"
            time.sleep(0.05)
        products.close()
    assert len({id(c) for c in connections}) == 3


def test_an_upstream_that_closes_unanswered_is_unreachable_not_retried_forever() -> None:
    requests: list[int] = []

    def drop(connection: socket.socket, nth: int) -> bool:
        requests.append(nth)
        return False

    with scripted_receiver(drop, path="") as url:
        products = client(url)
        with pytest.raises(UpstreamUnavailable, match="products_service is unreachable"):
            products.return_sale_stock("k")
        products.close()
    assert requests == [1]  # a new connection that fails is not tried again (no retries)


def test_callers_beyond_the_connection_limit_wait_within_their_timeout() -> None:
    """The bulkhead: with one connection allowed, a second call waits for it while the first
    is in flight, and gives up at its timeout instead of opening another."""
    release = threading.Event()
    seen: list[int] = []

    def stall_first(connection: socket.socket, nth: int) -> bool:
        seen.append(nth)
        if nth == 1:
            release.wait(10)
        connection.sendall(ANSWER)
        return True

    with scripted_receiver(stall_first, path="") as url:
        products = client(url, max_connections=1)
        answers: list[str] = []
        first = threading.Thread(
            target=lambda: answers.append(products.return_sale_stock("k").status)
        )
        first.start()
        time.sleep(0.1)
        began = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
            products.return_sale_stock("k", budget_seconds=0.3)
        assert 0.25 < time.monotonic() - began < 1
        assert seen == [1]  # the second call never reached the upstream
        release.set()
        first.join()
        products.close()
    assert answers == ["returned"]


def test_a_base_url_with_a_path_is_kept_in_front_of_every_call() -> None:
    heads: list[list[bytes]] = []

    def keep(connection: socket.socket, nth: int) -> bool:
        connection.sendall(ANSWER)
        return True

    with scripted_receiver(keep, path="/gateway/products", heads=heads) as url:
        products = client(url + "/")
        products.return_sale_stock("k")
        products.close()
    assert heads[0][0] == f"POST /gateway/products{SALE_STOCK_PATH}/k/return HTTP/1.1\r\n".encode()
