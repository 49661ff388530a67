"""Idempotency keys: a retried request gets the first answer and changes nothing.

Writes that leave a row of their own under the key (a sale, a refund, a reservation, a
stock take) find it by the key's unique index and answer with ``replay``. Other writes
(receipts, adjustments, returns...) keep their answer in ``idempotency_records``, used
inside one request transaction like this::

    replay = claim(session, scope="inventory.receive", key=key, payload=body)
    if replay is not None:
        return replay.response()
    ... do the work ...
    remember(session, scope=..., key=key, status_code=201, body=answer)

``claim`` inserts the key first. A concurrent request with the same key blocks on the
unique index until the first commits, then sees the stored answer; if the first rolls
back, the key is free again and the retry does the work. The work and the stored
answer commit together, so there is never a stored answer without its effect.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.errors import Conflict, IdempotencyKeyReused
from common.models import IdempotencyRecord

PENDING = 0

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Send the same key on a retry to get the first answer without a repeat",
    ),
]


class KeyedRecord(Protocol):
    """A row written once per idempotency key, with the digest of the request that wrote it."""

    request_hash: str


Record = TypeVar("Record", bound=KeyedRecord)


def replay(
    record: Record, digest: str, *, key: str, field: str, used_for: str, **context: Any
) -> Record:
    """The one replay rule for every keyed write (sales, refunds, reservations, stock
    takes): the record found under a key answers a request with the same digest; another
    request under that key is a 422 naming what the key was used for."""
    if record.request_hash != digest:
        raise IdempotencyKeyReused(
            f"{field.removeprefix('header.')} {key!r} "
            f"was already used for {used_for} with a different request",
            field=field,
            **context,
        )
    return record


def request_hash(payload: Any) -> str:
    canonical = json.dumps(jsonable_encoder(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body, status_code=self.status_code, headers={"Idempotent-Replayed": "true"}
        )


def claim(session: Session, *, scope: str, key: str, payload: Any) -> Replay | None:
    """Take the key for this request, or return the answer already given for it."""
    digest = request_hash(payload)
    try:
        with session.begin_nested():
            session.add(
                IdempotencyRecord(
                    scope=scope, key=key, request_hash=digest, status_code=PENDING, response_body={}
                )
            )
    except IntegrityError:
        record = session.scalars(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
            .execution_options(populate_existing=True)
        ).one()
        if record.request_hash != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was already used with a different request body",
                field="header.Idempotency-Key",
            ) from None
        if record.status_code == PENDING:  # only visible if the first one is still running
            raise Conflict(
                f"A request with Idempotency-Key {key!r} is still in progress; retry shortly"
            ) from None
        return Replay(status_code=record.status_code, body=record.response_body)
    return None


def remember(session: Session, *, scope: str, key: str, status_code: int, body: Any) -> None:
    """Store the answer for the claimed key, in the same transaction as the work."""
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
        .values(status_code=status_code, response_body=jsonable_encoder(body))
    )
