"""A scripted HTTP peer on 127.0.0.1, for tests of how a client treats what a server does
(keeps, drops, stalls, floods)."""

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def _head(reader: BinaryIO) -> list[bytes]:
    """A request's head lines; none at the end of the stream."""
    lines = []
    while (line := reader.readline()) not in (b"\r\n", b""):
        lines.append(line)
    return lines


@contextmanager
def scripted_receiver(
    answer: Callable[[socket.socket, int], bool],
    path: str = "/hook",
    heads: list[list[bytes]] | None = None,
) -> Iterator[str]:
    """A receiver on 127.0.0.1 that reads each request whole (its head lines appended to
    ``heads``), then lets ``answer(connection, nth)`` write what it likes (nth: requests so
    far, 1 for the first); the connection is kept while it returns True. Yields the URL (the
    origin, then ``path``)."""
    listener = socket.create_server(("127.0.0.1", 0))
    count = itertools.count(1)

    def serve(connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as reader:
            while head := _head(reader):
                if heads is not None:
                    heads.append(head)
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                reader.read(length)
                if not answer(connection, next(count)):
                    return

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}{path}"
    finally:
        listener.close()
