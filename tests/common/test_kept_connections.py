"""A kept connection against a scripted server: every way HTTP/1.1 may frame an answer, the
answers that end it, the ones that break it, and what a request may not carry."""

import contextlib
import http.client
import socket
import time
from urllib.parse import urlsplit

import pytest

from common.kept_connections import KeptConnection
from tests.scripted import NO_CONTENT, scripted_receiver


def connection_to(url: str, timeout: float = 5) -> KeptConnection:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return KeptConnection("http", parts.hostname, parts.port, timeout=timeout)


def one_answer(*pieces: bytes, keep: bool = True) -> tuple[KeptConnection, bytes, int]:
    """The status and body of one POST answered with ``pieces`` (sent one by one), the
    connection afterwards, and the head lines of the request the server read."""
    heads: list[list[bytes]] = []

    def answer(connection: socket.socket, _nth: int) -> bool:
        for piece in pieces:
            connection.sendall(piece)
            time.sleep(0.01)
        return keep

    with scripted_receiver(answer, path="/x?y=1", heads=heads) as url:
        connection = connection_to(url)
        got = connection.request("POST", "/x?y=1", {"Content-Type": "text/plain"}, b"hello")
        assert heads[0][0] == b"POST /x?y=1 HTTP/1.1\r\n"
        assert b"Content-Length: 5\r\n" in heads[0] and b"Content-Type: text/plain\r\n" in heads[0]
        return connection, got.body, got.status


def test_an_answer_of_a_given_length_keeps_the_connection() -> None:
    connection, body, status = one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", b"llo")
    assert (status, body) == (200, b"hello")
    assert connection.reusable()


def test_a_chunked_answer_is_read_whole_across_pieces() -> None:
    connection, body, status = one_answer(
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"4\r\ndefg\r\n0\r\n\r\n",
    )
    assert (status, body) == (201, b"abcdefg")
    assert connection.reusable()


def test_an_answer_ended_by_the_close_is_whole_and_the_connection_gone() -> None:
    connection, body, status = one_answer(b"HTTP/1.1 500 Oops\r\n\r\nall ", b"of it", keep=False)
    assert (status, body) == (500, b"all of it")
    assert connection.sock is None and not connection.reusable()


def test_interim_answers_are_passed_over_for_the_final_one() -> None:
    connection, body, status = one_answer(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        NO_CONTENT,
    )
    assert (status, body) == (204, b"")
    assert connection.reusable()


def test_a_server_saying_it_closes_or_sending_more_than_asked_is_not_reused() -> None:
    closing, _, status = one_answer(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    assert status == 200 and closing.sock is None
    # a body after a 204 (which has none): the answer stands, the connection does not
    stray, body, status = one_answer(b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok")
    assert (status, body) == (204, b"") and stray.sock is None


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ((), http.client.RemoteDisconnected),
        ((b"HTTP/1.1 200 OK\r\nContent-Le",), http.client.IncompleteRead),
        ((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",), http.client.IncompleteRead),
        ((b"SSH-2.0-OpenSSH_9.2\r\n",), http.client.HTTPException),
    ],
    ids=["unanswered", "head-cut", "body-cut", "not-http"],
)
def test_an_answer_cut_short_or_not_http_fails_and_closes(
    pieces: tuple[bytes, ...], error: type[Exception]
) -> None:
    def answer(connection: socket.socket, _nth: int) -> bool:
        for piece in pieces:
            connection.sendall(piece)
        return False

    with scripted_receiver(answer) as url:
        connection = connection_to(url)
        with pytest.raises(error):
            connection.request("POST", "/hook", {}, b"{}")
    assert connection.sock is None


def test_a_silent_server_times_out_and_a_limited_answer_is_cut_at_its_deadline() -> None:
    def stall(connection: socket.socket, _nth: int) -> bool:
        time.sleep(1)
        return False

    with scripted_receiver(stall) as url:
        connection = connection_to(url, timeout=0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.request("POST", "/hook", {}, b"{}")
        assert time.monotonic() - started < 0.9

    def endless(connection: socket.socket, _nth: int) -> bool:
        connection.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 100000000\r\n\r\n")
        with contextlib.suppress(OSError):  # (the client hangs up, as it should)
            for _ in range(100):
                connection.sendall(b"x" * 100)
                time.sleep(0.01)
        return False

    with scripted_receiver(endless) as url:
        connection = connection_to(url)
        started = time.perf_counter()
        answer = connection.request("POST", "/hook", {}, b"{}", limit=50, deadline=started + 0.2)
        assert answer.status == 500 and answer.body == b"x" * 50
        assert time.perf_counter() - started < 0.9 and connection.sock is None


def test_a_header_holding_a_line_break_is_refused_before_anything_is_sent() -> None:
    sent: list[int] = []

    def count(connection: socket.socket, nth: int) -> bool:
        sent.append(nth)
        connection.sendall(NO_CONTENT)
        return True

    with scripted_receiver(count) as url:
        connection = connection_to(url)
        for value in ("a\r\nX-Injected: 1", "a\nb", "a\rb"):
            with pytest.raises(ValueError, match="line break"):
                connection.request("POST", "/hook", {"X-Request-ID": value}, b"")
        assert connection.request("POST", "/hook", {"X-Request-ID": "fine"}).status == 204
    assert sent == [1]
