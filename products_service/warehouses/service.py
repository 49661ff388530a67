"""Warehouse rules: unique codes and exactly one default warehouse, which stays active."""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import audit
from common.errors import Conflict, NotFound
from common.models import Warehouse
from common.pagination import PageParams, Slice, parse_sort
from products_service.warehouses import repository
from products_service.warehouses.schemas import WarehouseCreate, WarehouseUpdate

# What the audit log follows of a warehouse.
AUDIT_TRAIL = audit.Trail("warehouse", ("code", "name", "address", "is_default", "is_active"))


def _snapshots(warehouses: list[Warehouse]) -> dict[int, dict[str, object]]:
    return {w.id: AUDIT_TRAIL.snapshot(w) for w in warehouses}


def _code_conflict(code: str) -> Conflict:
    return Conflict(f"A warehouse with code {code!r} already exists", field="code")


def _not_found(warehouse_id: int) -> NotFound:
    return NotFound(f"Warehouse {warehouse_id} not found", resource="warehouse", id=warehouse_id)


def get_warehouse(*, session: Session, warehouse_id: int) -> Warehouse:
    warehouse = repository.get(session, warehouse_id)
    if warehouse is None:
        raise _not_found(warehouse_id)
    return warehouse


def list_warehouses(
    *, session: Session, page: PageParams, sort: str | None, include_inactive: bool
) -> Slice[Warehouse]:
    order_by = parse_sort(sort, repository.SORT_COLUMNS, default="code")
    return repository.list_page(
        session, include_inactive=include_inactive, page=page, order_by=order_by
    )


def create_warehouse(
    *, session: Session, data: WarehouseCreate, actor_id: int | None, actor_email: str | None
) -> Warehouse:
    """Add a warehouse; created as the default, it takes that role from the previous one."""
    if repository.code_taken(session, data.code):
        raise _code_conflict(data.code)
    # Locked before the insert, in id order, so concurrent default switches queue up.
    previous = repository.lock_all(session) if data.is_default else []
    before = _snapshots(previous)
    warehouse = Warehouse(**data.model_dump())
    session.add(warehouse)
    for other in previous:
        other.is_default = False
    try:
        session.flush()
    except IntegrityError as exc:
        if "code" in str(exc.orig):
            raise _code_conflict(data.code) from exc
        raise
    AUDIT_TRAIL.record(
        session, "warehouse.created", warehouse, {}, actor_id=actor_id, actor_email=actor_email
    )
    for other in previous:  # the one that stopped being the default
        AUDIT_TRAIL.record(
            session,
            "warehouse.updated",
            other,
            before[other.id],
            actor_id=actor_id,
            actor_email=actor_email,
        )
    return warehouse


def update_warehouse(
    *,
    session: Session,
    warehouse_id: int,
    data: WarehouseUpdate,
    actor_id: int | None,
    actor_email: str | None,
) -> Warehouse:
    """Change the fields sent, keeping exactly one default warehouse and keeping it active."""
    changes = data.model_dump(exclude_unset=True)
    wants_default = changes.get("is_default")
    if wants_default:
        everyone = repository.lock_all(session)
        found = next((w for w in everyone if w.id == warehouse_id), None)
    else:
        everyone = []
        found = repository.get(session, warehouse_id, lock=True)
    if found is None:
        raise _not_found(warehouse_id)
    warehouse = found
    if wants_default is False and warehouse.is_default:
        raise Conflict(
            f"Warehouse {warehouse.code} is the default; make another warehouse the default "
            "instead, so there is always one",
            field="is_default",
        )
    stays_active = changes.get("is_active", warehouse.is_active)
    if not stays_active and (warehouse.is_default or wants_default):
        raise Conflict(
            f"Warehouse {warehouse.code} is (or would become) the default and cannot be "
            "inactive; make another warehouse the default first",
            field="is_active",
        )
    before = _snapshots([warehouse, *everyone])
    for field in ("name", "address", "is_active"):
        if field in changes:
            setattr(warehouse, field, changes[field])
    if wants_default:
        for other in everyone:
            other.is_default = other.id == warehouse.id
    session.flush()
    # The one changed, then any that lost the default to it.
    for changed in [warehouse, *(w for w in everyone if w.id != warehouse.id)]:
        AUDIT_TRAIL.record(
            session,
            "warehouse.updated",
            changed,
            before[changed.id],
            actor_id=actor_id,
            actor_email=actor_email,
        )
    return warehouse
