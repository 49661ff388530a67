"""Category tree: create, list, look up with ancestors and children, move, archive, restore."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy.orm import Session

from common.auth.dependencies import CurrentUser, ManagerUser
from common.db import SessionDep
from common.errors import error_responses
from common.models import Category
from common.pagination import Page, PageDep, sort_pattern
from products_service.categories import repository, service
from products_service.categories.schemas import (
    CategoryCreate,
    CategoryDetail,
    CategoryRead,
    CategoryTreeNode,
    CategoryUpdate,
)

router = APIRouter(prefix="/categories", tags=["categories"], responses=error_responses(401, 422))

SORT_HELP = "Comma-separated fields, '-' for descending: name, slug, created_at"


def _read(session: Session, category: Category) -> CategoryRead:
    return CategoryRead.of(category, service.full_names(session, [category])[category.id])


def _node(node: service.TreeNode) -> CategoryTreeNode:
    category = node.category
    return CategoryTreeNode(
        id=category.id,
        name=category.name,
        slug=category.slug,
        full_name=node.full_name,
        archived_at=category.archived_at,
        children=[_node(child) for child in node.children],
    )


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
    return _read(
        session,
        service.create_category(
            session=session, data=body, actor_id=principal.id, actor_email=principal.user.email
        ),
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
    top_level: Annotated[
        bool, Query(description="Only the top-level categories (those without a parent)")
    ] = False,
    q: Annotated[str | None, Query(max_length=120, description="Name contains this")] = None,
    include_archived: Annotated[bool, Query(description="Also list archived ones")] = False,
) -> Page[CategoryRead]:
    """Categories matching the filters, sorted by name unless told otherwise."""
    found = service.list_categories(
        session=session,
        page=page,
        sort=sort,
        parent_id=parent_id,
        top_level=top_level,
        q=q,
        include_archived=include_archived,
    )
    names = service.full_names(session, found.rows)
    return Page.of(found.map(lambda c: CategoryRead.of(c, names[c.id])))


@router.get("/tree", summary="The category tree")
def get_category_tree(
    _user: CurrentUser,
    session: SessionDep,
    include_archived: Annotated[bool, Query(description="Archived ones too")] = False,
) -> list[CategoryTreeNode]:
    """Every category nested under its parent, siblings by name, each with its full name:
    what a category picker shows. Without `include_archived`, an archived category is left
    out with everything under it."""
    return [_node(n) for n in service.tree(session=session, include_archived=include_archived)]


@router.api_route("/tree", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def tree_is_read_only() -> None:
    """A 405 naming GET: without it, PATCH /categories/tree would be read as an update of a
    category whose id is "tree" (a 422)."""
    raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED, "Method Not Allowed")


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
    return _read(
        session,
        service.update_category(
            session=session,
            category_id=category_id,
            data=body,
            actor_id=principal.id,
            actor_email=principal.user.email,
        ),
    )


@router.post(
    "/{category_id}/archive",
    summary="Archive a category",
    responses=error_responses(403, 404, 409),
)
def archive_category(category_id: int, principal: ManagerUser, session: SessionDep) -> CategoryRead:
    """Hide it from lists; 409 while it has active subcategories or active products."""
    return _read(
        session,
        service.archive_category(
            session=session,
            category_id=category_id,
            actor_id=principal.id,
            actor_email=principal.user.email,
        ),
    )


@router.post(
    "/{category_id}/restore",
    summary="Restore an archived category",
    responses=error_responses(403, 404, 409),
)
def restore_category(category_id: int, principal: ManagerUser, session: SessionDep) -> CategoryRead:
    """Make it active again; 409 while its parent is still archived."""
    return _read(
        session,
        service.restore_category(
            session=session,
            category_id=category_id,
            actor_id=principal.id,
            actor_email=principal.user.email,
        ),
    )
