"""Request bodies, checked before any route sees them: a size limit for every body, and JSON
that could never be stored refused as bad input rather than failing at the database.

- A body over ``SHOP_MAX_BODY_BYTES`` gets 413 (by its Content-Length before it is read, or
  as soon as a streamed body passes the limit).
- A JSON body is parsed by a strict parser first: a lone UTF-16 surrogate (``"\\ud800"``,
  which Python's json module lets through and no UTF-8 column can hold) is a 422.
- No string in a JSON body may hold a control character other than tab, newline and
  carriage return (a NUL in a name, an escape sequence in a note): 422 naming the field.

Pure ASGI and one pass of a Rust parser over the bytes, so the sale path barely notices.
"""

import json
from collections.abc import Mapping
from typing import Any

import pydantic_core
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}
_CONTROLS = {chr(c) for c in range(32)} - _ALLOWED_CONTROLS | {"\x7f"}


def _control_in(value: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The path of the first string (or key) holding a forbidden control character."""
    if isinstance(value, str):
        return path if not _CONTROLS.isdisjoint(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if not _CONTROLS.isdisjoint(key):
                return (*path, key)
            found = _control_in(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _control_in(item, (*path, index))
            if found is not None:
                return found
    return None


def _field_error(field: str, reason: str, kind: str) -> bytes:
    return json.dumps(
        {
            "error": "validation_error",
            "detail": f"Invalid input: {field}: {reason}",
            "fields": [{"field": field, "reason": reason, "type": kind}],
        }
    ).encode()


def _body_problem(body: bytes) -> bytes | None:
    """The 422 answer for a JSON body that must not reach a route, else None."""
    try:
        parsed = pydantic_core.from_json(body)
    except ValueError as exc:
        try:
            json.loads(body)
        except ValueError:
            return None  # plainly malformed: FastAPI's own answer names where
        # Python reads it but the strict parser does not: a lone surrogate escape.
        return _field_error(
            "body",
            f"is not valid UTF-8 text once decoded (a lone surrogate escape?): {exc}",
            "string_unicode",
        )
    where = _control_in(parsed, ("body",))
    if where is None:
        return None
    return _field_error(
        ".".join(str(p) for p in where),
        "must not contain control characters (only tab, newline and carriage return)",
        "string_control_character",
    )


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyGuard:
    """ASGI middleware: the body size limit, and the JSON checks above."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, upload_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Path prefix -> a larger limit, for the routes that take files (imports).
        self.upload_limits = dict(upload_limits or {})

    def _limit(self, scope: Scope) -> int:
        path: str = scope["path"]
        return next(
            (limit for prefix, limit in self.upload_limits.items() if path.startswith(prefix)),
            self.max_body_bytes,
        )

    async def _answer(self, send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _too_large(self, send: Send, limit: int) -> None:
        body = json.dumps(
            {
                "error": "payload_too_large",
                "detail": f"The request body is larger than {limit} bytes",
                "max_bytes": limit,
            }
        ).encode()
        await self._answer(send, 413, body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        length = _content_length(scope)
        if length is not None and length > limit:
            await self._too_large(send, limit)
            return
        if not _is_json(scope):
            await self.app(scope, self._counting(receive, limit), send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = _body_problem(body) if body else None
        if problem is not None:
            await self._answer(send, 422, problem)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)

    def _counting(self, receive: Receive, limit: int) -> Receive:
        """A streamed body that passes the limit ends there, as if the client went away."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    return {"type": "http.disconnect"}
            return message

        return counted
