"""Category tree: create, list, look up with ancestors and children, move, archive, restore."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from common.auth.dependencies import CurrentUser, ManagerUser
from common.db import SessionDep
from common.errors import error_responses
from common.pagination import Page, PageDep, sort_pattern
from products_service.categories import repository, service
from products_service.categories.schemas import (
    CategoryCreate,
    CategoryDetail,
    CategoryRead,
    CategoryUpdate,
)

router = APIRouter(prefix="/categories", tags=["categories"], responses=error_responses(401, 422))

SORT_HELP = "Comma-separated fields, '-' for descending: name, slug, created_at"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a category",
    responses=error_responses(403, 409, 422),
)
def create_category(
    body: CategoryCreate, principal: ManagerUser, session: SessionDep
) -> CategoryRead:
    """Add a category, optionally under a parent; the slug is derived from the name if omitted."""
    return CategoryRead.model_validate(
        service.create_category(
            session=session, data=body, actor_id=principal.id, actor_email=principal.user.email
        )
    )


@router.get("", summary="List categories", responses=error_responses(400, 422))
def list_categories(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    sort: Annotated[
        str | None,
        Query(
            description=SORT_HELP,
            json_schema_extra={"pattern": sort_pattern(repository.SORT_COLUMNS)},
            examples=["-created_at,name"],
        ),
    ] = None,
    parent_id: Annotated[int | None, Query(description="Only direct children of this one")] = None,
    q: Annotated[str | None, Query(max_length=120, description="Name contains this")] = None,
    include_archived: Annotated[bool, Query(description="Also list archived ones")] = False,
) -> Page[CategoryRead]:
    """Categories matching the filters, sorted by name unless told otherwise."""
    items, total = service.list_categories(
        session=session,
        page=page,
        sort=sort,
        parent_id=parent_id,
        q=q,
        include_archived=include_archived,
    )
    return Page(
        items=[CategoryRead.model_validate(c) for c in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/{category_id}", summary="Get a category by id or slug", responses=error_responses(404)
)
def get_category(
    # Named as in the other routes on this path: OpenAPI counts differently named parameters
    # at one place as two paths, and so would every client generated from the document.
    id_or_slug: Annotated[str, Path(alias="category_id", description="An id, or a slug")],
    _user: CurrentUser,
    session: SessionDep,
) -> CategoryDetail:
    """A number is read as an id, anything else as a slug; archived categories are found too."""
    family = service.get_family(session=session, id_or_slug=id_or_slug)
    return CategoryDetail.build(family.category, family.ancestors, family.children)


@router.patch(
    "/{category_id}",
    summary="Update or move a category",
    responses=error_responses(403, 404, 409, 422),
)
def update_category(
    category_id: int, body: CategoryUpdate, principal: ManagerUser, session: SessionDep
) -> CategoryRead:
    """Change name, slug, description or parent; moving under its own subtree is a 409."""
    return CategoryRead.model_validate(
        service.update_category(
            session=session,
            category_id=category_id,
            data=body,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )


@router.post(
    "/{category_id}/archive",
    summary="Archive a category",
    responses=error_responses(403, 404, 409),
)
def archive_category(category_id: int, principal: ManagerUser, session: SessionDep) -> CategoryRead:
    """Hide it from lists; 409 while it has active subcategories or active products."""
    return CategoryRead.model_validate(
        service.archive_category(
            session=session,
            category_id=category_id,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )


@router.post(
    "/{category_id}/restore",
    summary="Restore an archived category",
    responses=error_responses(403, 404, 409),
)
def restore_category(category_id: int, principal: ManagerUser, session: SessionDep) -> CategoryRead:
    """Make it active again; 409 while its parent is still archived."""
    return CategoryRead.model_validate(
        service.restore_category(
            session=session,
            category_id=category_id,
            actor_id=principal.id,
            actor_email=principal.user.email,
        )
    )
