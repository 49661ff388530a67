"""Fan-out: a durable consumer of one outbox that queues a delivery per matching endpoint.

Each service runs it over its own outbox (consumer ``webhooks-products`` or
``webhooks-sales`` in ``outbox_positions``). One pass is one transaction, as for the report
rollups: lock the position (one replica at a time advances it), read the next committed
events in commit-safe order (``outbox.read_after``), insert one pending delivery per event
and active endpoint that subscribes to its type, and move the position past them. Either
all of it commits or none of it, so a killed process neither loses nor doubles an event.

An endpoint gets the events after its creation (``<source>_after_id``), and none while it
is disabled.
"""

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic_core import to_jsonable_python
from sqlalchemy import Connection, Engine, Row, Table

from common import outbox
from common.db import retry_lock_conflicts, utcnow
from common.webhooks import repository

Source = Literal["products", "sales"]
OUTBOXES: dict[str, Table] = {"products": outbox.PRODUCTS_OUTBOX, "sales": outbox.SALES_OUTBOX}
BATCH = 500


def consumer_name(source: Source) -> str:
    return f"webhooks-{source}"


def subscribes(event_types: Sequence[str], event_type: str) -> bool:
    """Whether a list of filters takes this type: empty takes all; an item ending in "."
    is a prefix (``sale.``), any other must equal it."""
    if not event_types:
        return True
    return any(
        event_type.startswith(item) if item.endswith(".") else event_type == item
        for item in event_types
    )


def message_id(source: str, event_id: int) -> str:
    """The Webhook-Id of an event: unique across both outboxes, the same on every try."""
    return f"{source}-{event_id}"


def message_body(
    *, id_: str, type_: str, occurred_at: Any, source: str, data: Any
) -> dict[str, Any]:
    """The JSON body every endpoint receives."""
    return {
        "id": id_,
        "type": type_,
        "occurred_at": to_jsonable_python(occurred_at),
        "source": source,
        "data": data,
    }


def encode(body: Any) -> str:
    """A message body as the exact JSON text it is queued and sent as (compact)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def deliveries_for(
    source: Source, events: Sequence[Row[Any]], endpoints: Sequence[Row[Any]]
) -> list[dict[str, Any]]:
    """The delivery rows these events make for these endpoints, in event order."""
    after_column = f"{source}_after_id"
    now = utcnow()
    rows = []
    for event in events:
        body: str | None = None  # encoded once for every endpoint that takes the event
        for endpoint in endpoints:
            if event.id <= getattr(endpoint, after_column) or not subscribes(
                endpoint.event_types or [], event.type
            ):
                continue
            id_ = message_id(source, event.id)
            if body is None:
                body = encode(
                    message_body(
                        id_=id_,
                        type_=event.type,
                        occurred_at=event.occurred_at,
                        source=source,
                        data=event.payload,
                    )
                )
            rows.append(
                {
                    "endpoint_id": endpoint.id,
                    "message_id": id_,
                    "source": source,
                    "event_id": event.id,
                    "event_type": event.type,
                    "payload": body,
                    "status": repository.PENDING,
                    "attempts": 0,
                    "round_attempts": 0,
                    "queued_at": now,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    return rows


def fan_out_batch(connection: Connection, source: Source, *, batch: int = BATCH) -> tuple[int, int]:
    """One pass in the caller's transaction: (events read, deliveries queued)."""
    consumer = consumer_name(source)
    position, _ = outbox.lock_position(connection, consumer)
    events = outbox.read_after(connection, OUTBOXES[source], position, limit=batch)
    if not events:
        return 0, 0
    deliveries = deliveries_for(source, events, repository.active_subscriptions(connection))
    repository.queue_deliveries(connection, deliveries)
    outbox.save_position(connection, consumer, events[-1].id)
    return len(events), len(deliveries)


def fan_out_once(engine: Engine, source: Source, *, batch: int = BATCH) -> tuple[int, int]:
    """The next pass, in a transaction of its own: (events read, deliveries queued)."""

    def one_pass() -> tuple[int, int]:
        with engine.begin() as connection:
            return fan_out_batch(connection, source, batch=batch)

    return retry_lock_conflicts(one_pass)
