"""Outbox rows as stream events: what each names (products, categories, warehouses,
channels), the filter a client asks for, and the Server-Sent Events wire format.

An event is encoded once, when the feed reads it, and the same bytes go to every client it
matches: the per-client work is a few set lookups and a write.
"""

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python

PRODUCT, CATEGORY, WAREHOUSE, CHANNEL = "product", "category", "warehouse", "channel"
# Where a payload names what it is about: ``<kind>_id`` at its top level, in ``previous``
# (a product moved out of a category), or in any list of lines (sale lines, before and after
# a refund; reservation lines); a transfer names both warehouses.
_REF_FIELDS: dict[str, tuple[str, ...]] = {
    PRODUCT: ("product_id",),
    CATEGORY: ("category_id",),
    WAREHOUSE: ("warehouse_id", "from_warehouse_id", "to_warehouse_id"),
    CHANNEL: ("channel_id",),
}

Refs = Mapping[str, frozenset[int]]


def _ids_in(item: Mapping[str, Any], names: tuple[str, ...]) -> Iterable[int]:
    for name in names:
        value = item.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            yield value


def _parts(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The payload and the mappings nested one level in it (lines, ``previous``)."""
    parts: list[Mapping[str, Any]] = [payload]
    for value in payload.values():
        if isinstance(value, Mapping):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(v for v in value if isinstance(v, Mapping))
    return parts


def refs_of(payload: Mapping[str, Any]) -> dict[str, frozenset[int]]:
    """The ids a payload names, by kind."""
    parts = _parts(payload)
    return {
        kind: frozenset(i for part in parts for i in _ids_in(part, names))
        for kind, names in _REF_FIELDS.items()
    }


def names_categories(payload: Mapping[str, Any]) -> bool:
    """Whether the payload says which category it is about (a stock movement does not; its
    product's category is then looked up, see repository.product_categories)."""
    return any("category_id" in part for part in _parts(payload))


def _data(value: Any) -> str:
    # One line: JSON escapes every newline inside strings.
    return json.dumps(to_jsonable_python(value), separators=(",", ":"), ensure_ascii=False)


def encode(*, data: Any, event: str | None = None, id_: int | None = None) -> bytes:
    """One SSE message. Without ``id_`` it leaves the client's Last-Event-ID as it was."""
    lines = []
    if id_ is not None:
        lines.append(f"id: {id_}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append(f"data: {_data(data)}")
    return ("\n".join(lines) + "\n\n").encode()


HEARTBEAT = b": ping\n\n"


def retry_hint(milliseconds: int) -> bytes:
    """How long a client should wait before reconnecting (a message with no data: it sets
    the client's reconnection time and dispatches nothing)."""
    return f"retry: {milliseconds}\n\n".encode()


@dataclass(frozen=True)
class StreamEvent:
    """One outbox row as a stream sends it."""

    id: int
    type: str
    refs: Refs
    wire: bytes  # the SSE message: ``id`` the outbox id, ``event`` the type, ``data`` JSON


def stream_event(
    *,
    id_: int,
    type_: str,
    subject_id: int | None,
    occurred_at: datetime,
    payload: Mapping[str, Any],
    category_of: Mapping[int, int] | None = None,
) -> StreamEvent:
    """The event of one outbox row; ``category_of`` gives the category of each product, for
    payloads that name products but no category."""
    refs = refs_of(payload)
    if category_of and not names_categories(payload):
        named = {category_of[p] for p in refs[PRODUCT] if p in category_of}
        refs[CATEGORY] = refs[CATEGORY] | named
    data = {
        "id": id_,
        "type": type_,
        "subject_id": subject_id,
        "occurred_at": occurred_at,
        "payload": payload,
    }
    return StreamEvent(id=id_, type=type_, refs=refs, wire=encode(data=data, event=type_, id_=id_))


def type_matches(patterns: Sequence[str], type_: str) -> bool:
    """A pattern ending in '.' is a prefix (``sale.``); any other must equal the type."""
    return not patterns or any(
        type_.startswith(p) if p.endswith(".") else type_ == p for p in patterns
    )


@dataclass(frozen=True)
class EventFilter:
    """What one client asked for. Each kind of id given narrows the stream to the events
    that name one of those ids (an event that names no id of that kind does not match); the
    kinds and the types combine with AND, the values of one of them with OR."""

    types: tuple[str, ...] = ()
    ids: tuple[tuple[str, frozenset[int]], ...] = ()  # (kind, ids) for each kind given

    @classmethod
    def of(cls, types: Iterable[str] = (), **ids: Iterable[int]) -> "EventFilter":
        """A filter of these type patterns and ids by kind (``product=[1, 2]``)."""
        wanted = tuple(sorted((kind, frozenset(v)) for kind, v in ids.items() if v))
        return cls(types=tuple(sorted(set(types))), ids=wanted)

    # It runs for every event and every client: the patterns are sorted out once.
    @functools.cached_property
    def _exact(self) -> frozenset[str]:
        return frozenset(p for p in self.types if not p.endswith("."))

    @functools.cached_property
    def _prefixes(self) -> tuple[str, ...]:
        return tuple(p for p in self.types if p.endswith("."))

    def matches(self, event: StreamEvent) -> bool:
        if self.types and not (event.type in self._exact or event.type.startswith(self._prefixes)):
            return False
        return all(not wanted.isdisjoint(event.refs.get(kind, ())) for kind, wanted in self.ids)

    def wants_type(self, type_: str) -> bool:
        return type_matches(self.types, type_)
