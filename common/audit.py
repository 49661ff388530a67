"""The audit log: who changed the catalog, prices, settings and users, when, and how.

``record`` appends one row to ``audit_log`` in the caller's transaction (it never commits),
so an entry exists exactly when its change committed: a refused or failed request leaves
none. Stock is not logged here; its ledger already names who moved what.

``changes`` holds, per field that changed, ``{"before": ..., "after": ...}`` as an API would
give it (money as decimal strings, times in ISO 8601, enums as their values). A field whose
name speaks of a secret (password, hash, token, secret, API key), at any depth, is stored as
``"[redacted]"`` on both sides: the log says it changed, never what it was or became.

Admins read the log through ``GET /api/v1/audit-log`` on either service (both write the
table and include the route), newest first, filtered by entity, actor, action and time.
"""

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)
from pydantic_core import to_json
from sqlalchemy import Select, Table, Text, bindparam, insert, select
from sqlalchemy.orm import Session

from common.auth.dependencies import AdminUser
from common.db import SessionDep, execute_rows, utcnow
from common.errors import error_responses
from common.fields import Instant
from common.models import AuditEntry
from common.observability import current_request_id
from common.pagination import Page, PageDep, PageParams, Slice, first, paginate

AUDIT_LOG: Table = AuditEntry.__table__  # type: ignore[assignment]
REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"password|passwd|secret|token|hash|api_?key", re.IGNORECASE)
# ``changes`` is sent as the JSON text _row made (pydantic's serializer, in one pass), not
# through the column's own serializer, which would walk the value again per row.
_INSERT = insert(AUDIT_LOG).values(changes=bindparam("changes", type_=Text()))
_PAIR = {"before", "after"}

Changes = Mapping[str, Mapping[str, Any]]
"""Field name -> ``{"before": value, "after": value}``."""


# --- writing ----------------------------------------------------------------------------


def snapshot(entity: object, fields: Iterable[str]) -> dict[str, Any]:
    """The current values of these attributes, to diff against after a change."""
    return {field: getattr(entity, field) for field in fields}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"field": {"before": old, "after": new}}`` for each field whose value differs (a field
    missing on one side counts as None there), in field-name order. Empty: nothing changed."""
    return {
        field: {"before": before.get(field), "after": after.get(field)}
        for field in sorted({*before, *after})
        if before.get(field) != after.get(field)
    }


# Types of values that hold no keys, told apart by an exact type lookup: a check against
# Mapping goes through the ABC machinery, which an import's thousands of entries feel.
_LEAVES = frozenset({str, int, float, bool, Decimal, datetime, type(None)})


@functools.lru_cache(maxsize=1024)  # bounded: keys may come from a request's JSON
def _secret(key: str) -> bool:
    return _SECRET_NAME.search(key) is not None


def _redact(value: Any) -> Any:
    """The value with every entry under a secret-sounding key replaced, at any depth."""
    if type(value) in _LEAVES:
        return value
    if isinstance(value, Mapping):
        return {
            key: (
                _hidden(item)
                if _secret(str(key))
                else item
                if type(item) in _LEAVES
                else _redact(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def _hidden(value: Any) -> Any:
    """A secret's place kept (a before/after pair stays a pair), its content gone."""
    if isinstance(value, Mapping) and set(value) <= {"before", "after"}:
        return {side: REDACTED for side in value}
    return REDACTED


def record(
    session: Session,
    *,
    actor_id: int | None,
    actor_email: str | None,
    action: str,
    entity_type: str,
    entity_id: int,
    changes: Changes,
) -> None:
    """Append one audit entry in the caller's transaction; it is written now (one INSERT)
    and kept only if that transaction commits.

    ``actor_id``/``actor_email``: the person who made the change (``principal.id``,
    ``principal.user.email``), None for the system. ``action`` is ``"<entity>.<verb>"``,
    e.g. ``"product.updated"``. ``changes`` maps each changed field to
    ``{"before": ..., "after": ...}`` (see ``diff``); secret fields are redacted here, so
    callers may pass them as they are.
    """
    session.execute(
        _INSERT,
        _row(
            actor_id=actor_id,
            actor_email=actor_email,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            changes=changes,
        ),
    )


def _row(
    *,
    actor_id: int | None,
    actor_email: str | None,
    action: str,
    entity_type: str,
    entity_id: int,
    changes: Changes,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """One audit_log row, the changes checked, redacted and written as JSON text."""
    return {
        "occurred_at": occurred_at or utcnow(),
        "actor_id": actor_id,
        "actor_email": actor_email,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "changes": to_json(_checked(changes)).decode(),
        "request_id": current_request_id() or None,
    }


def _checked(changes: Changes) -> dict[str, Any]:
    """The changes with every secret redacted, each one checked to be a before/after pair."""
    out: dict[str, Any] = {}
    for field, change in changes.items():
        if not (type(change) is dict or isinstance(change, Mapping)) or change.keys() != _PAIR:
            raise ValueError(f"audit change of {field!r} must be {{'before': ..., 'after': ...}}")
        if _secret(field):
            out[field] = _hidden(change)
        elif (
            type(change) is dict
            and type(change["before"]) in _LEAVES
            and type(change["after"]) in _LEAVES
        ):
            out[field] = change  # a dict of two plain values (the usual case): kept as it is
        else:
            out[field] = _redact(change)
    return out


class _Entity(Protocol):
    @property
    def id(self) -> int: ...


@dataclass(frozen=True)
class Trail:
    """What the audit log follows of one kind of entity: its type and the fields it diffs.

    A service takes ``before = TRAIL.snapshot(entity)``, makes its change, then calls
    ``TRAIL.record(...)``, which logs the fields that differ, if any.
    """

    entity_type: str
    fields: tuple[str, ...]

    @functools.cached_property
    def sorted_fields(self) -> list[str]:
        return sorted(self.fields)

    def snapshot(self, entity: object) -> dict[str, Any]:
        return snapshot(entity, self.fields)

    def record(
        self,
        session: Session,
        action: str,
        entity: _Entity,
        before: Mapping[str, Any],
        *,
        actor_id: int | None,
        actor_email: str | None,
    ) -> dict[str, dict[str, Any]]:
        """Log what changed in ``entity`` since ``before`` (``{}`` for a new one), unless
        nothing did; answer the changes."""
        changes = diff(before, self.snapshot(entity))
        if changes:
            record(
                session,
                actor_id=actor_id,
                actor_email=actor_email,
                action=action,
                entity_type=self.entity_type,
                entity_id=entity.id,
                changes=changes,
            )
        return changes

    def changes(
        self, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """``diff`` of the followed fields of two states given as values (``{}`` for none;
        a field missing counts as None)."""
        if not before:  # a new entity: each field that has a value
            return {
                field: {"before": None, "after": new}
                for field in self.sorted_fields
                if (new := after.get(field)) is not None
            }
        return {
            field: {"before": old, "after": new}
            for field in self.sorted_fields
            if (old := before.get(field)) != (new := after.get(field))
        }

    def record_many(
        self,
        session: Session,
        action: str,
        entries: Iterable[tuple[int, Changes]],
        *,
        actor_id: int | None,
        actor_email: str | None,
        answer_later: bool = False,
    ) -> None:
        """Log many entities' changes (``changes``: entity id and its changes) in one INSERT,
        leaving out those without any (a bulk import's batch); ``answer_later``: see
        ``common.db.execute_rows``."""
        now = utcnow()
        rows = [
            _row(
                actor_id=actor_id,
                actor_email=actor_email,
                action=action,
                entity_type=self.entity_type,
                entity_id=entity_id,
                changes=changes,
                occurred_at=now,
            )
            for entity_id, changes in entries
            if changes
        ]
        if rows:
            execute_rows(session, _INSERT, rows, answer_later=answer_later)


# --- reading ----------------------------------------------------------------------------


class FieldChange(BaseModel):
    before: JsonValue
    after: JsonValue


class AuditEntryRead(BaseModel):
    """One change: who made it, when, to what, and each field's value before and after."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "occurred_at": "2026-12-02T09:15:02.123456Z",
                    "actor_id": 3,
                    "actor_email": "manager@example.com",
                    "action": "product.updated",
                    "entity_type": "product",
                    "entity_id": 17,
                    "changes": {"price": {"before": "19.90", "after": "17.50"}},
                    "request_id": "5f0c6f9d2c1b4f7e9a8d3b2a1c0e9f8d",
                }
            ]
        },
    )

    id: int
    occurred_at: datetime
    actor_id: Annotated[int | None, Field(description="null: the system or a service")]
    actor_email: Annotated[str | None, Field(description="The actor's email at the time")]
    action: Annotated[str, Field(examples=["product.updated"])]
    entity_type: Annotated[str, Field(examples=["product"])]
    entity_id: int
    changes: Annotated[
        dict[str, FieldChange],
        Field(description="Each changed field's value before and after; secrets redacted"),
    ]
    request_id: Annotated[str | None, Field(description="The X-Request-ID of the change")]


class AuditFilters(BaseModel):
    """Query filters of the audit log; all optional and combined with AND."""

    entity_type: Annotated[
        str | None, Field(max_length=40, description="e.g. product, category, user")
    ] = None
    entity_id: Annotated[
        int | None, Field(gt=0, description="One entity's history; needs entity_type")
    ] = None
    actor_id: Annotated[int | None, Field(gt=0, description="Changes made by this user")] = None
    action: Annotated[str | None, Field(max_length=60, description="e.g. product.updated")] = None
    from_: Annotated[
        Instant | None,
        Field(alias="from", description="At or after this instant (ISO 8601 with offset)"),
    ] = None
    to: Annotated[
        Instant | None,
        Field(description="Before this instant, excluded (ISO 8601 with offset)"),
    ] = None

    @field_validator("entity_id")
    @classmethod
    def _needs_type(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("entity_type") is None:
            raise ValueError("needs entity_type too: ids are per type of entity")
        return value

    @field_validator("to")
    @classmethod
    def _after_from(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("from_")
        if value is not None and start is not None and start >= value:
            raise ValueError("must be later than 'from'")
        return value


def _matching(filters: AuditFilters) -> Select[Any]:
    stmt = select(AuditEntry)
    if filters.entity_type is not None:
        stmt = stmt.where(AuditEntry.entity_type == filters.entity_type)
    if filters.entity_id is not None:
        stmt = stmt.where(AuditEntry.entity_id == filters.entity_id)
    if filters.actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == filters.actor_id)
    if filters.action is not None:
        stmt = stmt.where(AuditEntry.action == filters.action)
    if filters.from_ is not None:
        stmt = stmt.where(AuditEntry.occurred_at >= filters.from_)
    if filters.to is not None:
        stmt = stmt.where(AuditEntry.occurred_at < filters.to)
    return stmt


def list_entries(*, session: Session, filters: AuditFilters, page: PageParams) -> Slice[AuditEntry]:
    """One page of matching entries, newest first, and how many match in all."""
    return paginate(session, _matching(filters), page, [AuditEntry.id.desc()]).map(first)


router = APIRouter(prefix="/audit-log", tags=["audit"], responses=error_responses(401, 403, 422))


@router.get("", summary="Read the audit log", operation_id="listAuditLog")
def list_audit_log(
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    filters: Annotated[AuditFilters, Query()],
) -> Page[AuditEntryRead]:
    """Who changed the catalog, prices, warehouses, channels and users, newest first (admins
    only). Stock movements are in the inventory ledger instead."""
    found = list_entries(session=session, filters=filters, page=page)
    return Page.of(found.map(AuditEntryRead.model_validate))
