"""HTTP/1.1 connections kept open between requests: the request written as one piece of bytes,
the answer parsed by httptools (llhttp, the C parser uvicorn serves with).

Used where a process POSTs to one known origin again and again (sales_service calling
products_service, a webhook endpoint's messages), and wants none of a general client's
cookies, redirects, auth or proxies from the environment. A POST and its answer cost about
40 us of CPU here, where the standard library's http.client took 140 (its answer's headers
go through the email package's parser) and httpx 400.

Errors are the standard library's: an ``OSError`` when connecting, sending or reading fails
(``TimeoutError`` when a step takes longer than the socket's timeout),
``http.client.RemoteDisconnected`` when the peer closed the connection before answering (a
kept connection the server had just closed: send again on a new one), another
``http.client.HTTPException`` for an answer that is cut short or not HTTP.
"""

import functools
import http.client
import select
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httptools

# A connection idle longer than this is not reused: uvicorn, like most servers, closes its
# side after 5 s, and a request sent as it does would fail.
KEEP_ALIVE_SECONDS = 4.0
READ_BYTES = 65536

Connector = Callable[[tuple[str, int], float], socket.socket]


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer: its status and body (its first ``limit`` bytes when one was given)."""

    status: int
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode(errors="replace")


def default_port(scheme: str) -> int:
    """The port a URL of this scheme means when it names none."""
    return 443 if scheme == "https" else 80


class KeptConnection:
    """One connection to one origin (``scheme``, ``host``, ``port``), connected at once
    (through ``connect``, ``socket.create_connection`` unless given; over TLS for https,
    the certificate checked against ``host``), each step bounded by ``timeout`` seconds."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        timeout: float,
        connect: Connector = socket.create_connection,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = (scheme, host, port)
        shown = f"[{host}]" if ":" in host else host
        self._host = (
            f"Host: {shown}" + ("" if port == default_port(scheme) else f":{port}") + "\r\n"
        )
        sock = connect((host, port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = (tls or default_tls()).wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket | None = sock
        self.idle_since = time.monotonic()

    def settimeout(self, timeout: float) -> None:
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def reusable(self) -> bool:
        """Whether it can carry the next request: open, idle for less than
        ``KEEP_ALIVE_SECONDS``, and with nothing to read before anything was sent (else the
        peer closed it, or sent what no request asked for)."""
        sock = self.sock
        if sock is None or time.monotonic() - self.idle_since >= KEEP_ALIVE_SECONDS:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        limit: int | None = None,
        deadline: float | None = None,
    ) -> Answer:
        """Send one request and read its answer. With a ``limit``, only that many bytes of
        the answer's body are kept, and a longer one, or one still arriving at ``deadline``
        (``time.perf_counter()``), is cut there and the connection closed. Closed too when
        anything fails, or when the answer says the server closes it."""
        sock = self.sock
        if sock is None:
            raise http.client.NotConnected("the connection is closed")
        request = _request_bytes(method, target, self._host, headers, body)
        try:
            sock.sendall(request)
            reading = _Reading(limit)
            parser = reading.parser
            while not reading.complete:
                data = sock.recv(READ_BYTES)
                if not data:
                    if reading.ends_at_close():
                        break
                    raise reading.cut_short()
                reading.received += len(data)
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    if not reading.complete:
                        raise http.client.HTTPException(f"not an HTTP/1.1 answer: {exc}") from exc
                    reading.extra = True  # (a body after a 204, say): the answer stands
                if reading.over(deadline):
                    self.close()
                    return reading.answer()
            if reading.extra or not reading.complete or not reading.keep_alive:
                self.close()
        except BaseException:
            self.close()
            raise
        self.idle_since = time.monotonic()
        return reading.answer()


def _request_bytes(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n", host]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"the header {name!r} holds a line break")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(lines).encode("latin-1") + body


class _Reading:
    """One answer as httptools parses it (its callbacks)."""

    __slots__ = (
        "body",
        "complete",
        "delimited",
        "extra",
        "keep_alive",
        "limit",
        "parser",
        "received",
        "size",
        "status",
    )

    def __init__(self, limit: int | None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.body: list[bytes] = []
        self.size = 0  # of the body
        self.received = 0  # bytes in all
        self.limit = limit
        self.delimited = False  # a length or chunks say where the body ends (not the close)
        self.complete = False
        self.extra = False  # bytes after the answer: nothing a request asked for
        self.keep_alive = False

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_header(self, name: bytes, _value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # (reset once the answer ends)

    def on_body(self, data: bytes) -> None:
        if self.limit is None or self.size < self.limit:
            self.body.append(data)
        self.size += len(data)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer: the final one follows
            self.status, self.delimited = 0, False
        else:
            self.complete = True

    def ends_at_close(self) -> bool:
        """The answer's headers are in and nothing but the close ends its body."""
        return self.status >= 200 and not self.delimited and self.status not in (204, 304)

    def over(self, deadline: float | None) -> bool:
        """A limited reading has enough of the body, or its time is up: stop reading (an
        answer whose head is not in by then fails)."""
        if self.limit is None or self.complete:
            return False
        late = deadline is not None and time.perf_counter() > deadline
        if self.status == 0:
            if late:
                raise TimeoutError("no answer in time")
            if self.received > self.limit:
                raise http.client.HTTPException("the answer's head is too long")
            return False
        return late or self.size > self.limit

    def cut_short(self) -> http.client.HTTPException:
        if self.received == 0:
            return http.client.RemoteDisconnected("the server closed the connection unanswered")
        return http.client.IncompleteRead(b"".join(self.body))

    def answer(self) -> Answer:
        body = b"".join(self.body)
        return Answer(self.status, body if self.limit is None else body[: self.limit])


@functools.cache
def default_tls() -> ssl.SSLContext:
    """Certificates checked against the system's authorities and the server's name."""
    return ssl.create_default_context()
