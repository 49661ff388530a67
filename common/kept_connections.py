"""HTTP/1.1 connections kept open between requests, on the standard library's http.client.

Used where a process POSTs to one known origin again and again (sales_service calling
products_service, a webhook endpoint's messages): http.client's request and answer cost
about a third of the CPU of httpx's (0.16 against 0.40 ms here), and those calls want none
of a general client's cookies, redirects, auth or proxies from the environment.
"""

import http.client
import select
import time

# A connection idle longer than this is not reused: uvicorn, like most servers, closes its
# side after 5 s, and a request sent as it does would fail.
KEEP_ALIVE_SECONDS = 4.0


def reusable(connection: http.client.HTTPConnection, idle_since: float) -> bool:
    """Whether a kept connection can carry the next request: connected, idle (since
    ``time.monotonic()`` was ``idle_since``) for less than ``KEEP_ALIVE_SECONDS``, and with
    nothing to read before anything was sent (else the peer closed it, or sent what no
    request asked for)."""
    sock = connection.sock
    if sock is None or time.monotonic() - idle_since >= KEEP_ALIVE_SECONDS:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
