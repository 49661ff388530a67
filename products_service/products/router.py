"""Products: create, search and filter, look up by id or SKU, update, archive, restore."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from common.auth.dependencies import CurrentUser, ManagerUser
from common.db import SessionDep
from common.errors import error_responses
from common.pagination import Page, PageDep, sort_pattern
from common.time_window import TimeWindowDep
from products_service.products import repository, service
from products_service.products.schemas import (
    ProductCreate,
    ProductDetail,
    ProductFilters,
    ProductRead,
    ProductUpdate,
)

router = APIRouter(prefix="/products", tags=["products"], responses=error_responses(401, 422))

SORT_HELP = (
    "Comma-separated fields, '-' for descending: name, sku, price, cost_price, created_at, "
    "stock (total available)"
)


def _detail(view: service.ProductView) -> ProductDetail:
    return ProductDetail.build_detail(view.product, view.category, view.stock)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a product",
    responses=error_responses(403, 409, 422),
)
def create_product(
    body: ProductCreate, principal: ManagerUser, session: SessionDep
) -> ProductDetail:
    """Add a product; the SKU must be unused and the category, if any, active."""
    return _detail(
        service.create_product(
            session=session,
            data=body,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )


@router.get("", summary="List, search and filter products", responses=error_responses(400, 422))
def list_products(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    filters: Annotated[ProductFilters, Query()],
    created: TimeWindowDep,
    sort: Annotated[
        str | None,
        Query(
            description=SORT_HELP,
            json_schema_extra={"pattern": sort_pattern(repository.SORT_COLUMNS)},
            examples=["-price,name", "stock"],
        ),
    ] = None,
) -> Page[ProductRead]:
    """Products with their stock totals, newest first unless sorted otherwise; `from`/`to`
    filter by creation time."""
    found = service.list_products(
        session=session, filters=filters, created=created, sort=sort, page=page
    )
    return Page.of(found.map(lambda r: ProductRead.build(r.product, r.category, r.totals)))


@router.get("/by-sku/{sku}", summary="Get a product by SKU", responses=error_responses(404))
def get_product_by_sku(sku: str, _user: CurrentUser, session: SessionDep) -> ProductDetail:
    """One product, archived or not, with its category and stock per warehouse."""
    return _detail(service.get_product_by_sku(session=session, sku=sku))


@router.get("/{product_id}", summary="Get a product", responses=error_responses(404))
def get_product(product_id: int, _user: CurrentUser, session: SessionDep) -> ProductDetail:
    """One product, archived or not, with its category and stock per warehouse."""
    return _detail(service.get_product(session=session, product_id=product_id))


@router.patch(
    "/{product_id}", summary="Update a product", responses=error_responses(403, 404, 409, 422)
)
def update_product(
    product_id: int, body: ProductUpdate, principal: ManagerUser, session: SessionDep
) -> ProductDetail:
    """Change only the fields sent; a new SKU must be unused (409)."""
    return _detail(
        service.update_product(
            session=session,
            product_id=product_id,
            data=body,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )


@router.post(
    "/{product_id}/archive", summary="Archive a product", responses=error_responses(403, 404)
)
def archive_product(product_id: int, principal: ManagerUser, session: SessionDep) -> ProductDetail:
    """Hide it from the list unless include_archived=true; its status reads `archived` until
    restored; stock is untouched. Idempotent."""
    return _detail(
        service.archive_product(
            session=session,
            product_id=product_id,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )


@router.post(
    "/{product_id}/restore",
    summary="Restore an archived product",
    responses=error_responses(403, 404),
)
def restore_product(product_id: int, principal: ManagerUser, session: SessionDep) -> ProductDetail:
    """Show it in the list again, with its status as it was before. Idempotent."""
    return _detail(
        service.restore_product(
            session=session,
            product_id=product_id,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )
