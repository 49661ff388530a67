"""Warehouses: create, list, get, update (including which one is the default)."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from common.auth.dependencies import CurrentUser, ManagerUser
from common.db import SessionDep
from common.errors import error_responses
from common.pagination import Page, PageDep, sort_pattern
from products_service.warehouses import repository, service
from products_service.warehouses.schemas import WarehouseCreate, WarehouseRead, WarehouseUpdate

router = APIRouter(prefix="/warehouses", tags=["warehouses"], responses=error_responses(401, 422))

SORT_HELP = "Comma-separated fields, '-' for descending: code, name, created_at"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a warehouse",
    responses=error_responses(403, 409, 422),
)
def create_warehouse(
    body: WarehouseCreate, principal: ManagerUser, session: SessionDep
) -> WarehouseRead:
    """Add a warehouse with a unique code; is_default=true moves the default to it."""
    return WarehouseRead.model_validate(
        service.create_warehouse(
            session=session, data=body, actor_id=principal.id, actor_email=principal.user.email
        )
    )


@router.get("", summary="List warehouses", responses=error_responses(400, 422))
def list_warehouses(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    sort: Annotated[
        str | None,
        Query(
            description=SORT_HELP,
            json_schema_extra={"pattern": sort_pattern(repository.SORT_COLUMNS)},
            examples=["name"],
        ),
    ] = None,
    include_inactive: Annotated[bool, Query(description="Also list inactive ones")] = False,
) -> Page[WarehouseRead]:
    """Active warehouses by code, unless told otherwise."""
    found = service.list_warehouses(
        session=session, page=page, sort=sort, include_inactive=include_inactive
    )
    return Page.of(found.map(WarehouseRead.model_validate))


@router.get("/{warehouse_id}", summary="Get a warehouse", responses=error_responses(404))
def get_warehouse(warehouse_id: int, _user: CurrentUser, session: SessionDep) -> WarehouseRead:
    """One warehouse by id, active or not."""
    return WarehouseRead.model_validate(
        service.get_warehouse(session=session, warehouse_id=warehouse_id)
    )


@router.patch(
    "/{warehouse_id}",
    summary="Update a warehouse",
    responses=error_responses(403, 404, 409, 422),
)
def update_warehouse(
    warehouse_id: int, body: WarehouseUpdate, principal: ManagerUser, session: SessionDep
) -> WarehouseRead:
    """Change name, address, active flag or default; the default cannot be deactivated (409)."""
    return WarehouseRead.model_validate(
        service.update_warehouse(
            session=session,
            warehouse_id=warehouse_id,
            data=body,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )
