"""Rules of the category tree: slugs, the materialised path, moves and archiving."""

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import audit
from common.db import utcnow
from common.errors import Conflict, NotFound, Unprocessable
from common.models import Category
from common.pagination import PageParams, Slice, parse_sort
from common.query import require_known_ids
from products_service.categories import repository
from products_service.categories.schemas import (
    FULL_NAME_SEPARATOR,
    CategoryCreate,
    CategoryUpdate,
)

MAX_PATH_LENGTH = 255  # the width of categories.path
SLUG_MAX_LENGTH = 120
# What the audit log follows of a category; its path only mirrors parent_id.
AUDIT_TRAIL = audit.Trail("category", ("name", "slug", "description", "parent_id", "archived_at"))


@dataclass(frozen=True)
class CategoryFamily:
    """A category with its ancestors (root first) and its direct non-archived children."""

    category: Category
    ancestors: list[Category]
    children: list[Category]


def slugify(name: str) -> str:
    """'Café & Crème 2' -> 'cafe-creme-2': ascii, lowercase, words joined by hyphens."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:SLUG_MAX_LENGTH].rstrip("-")


def path_ids(path: str) -> list[int]:
    """'/1/5/9/' -> [1, 5, 9]."""
    return [int(part) for part in path.strip("/").split("/") if part]


def _not_found(category_id: int) -> NotFound:
    return NotFound(f"Category {category_id} not found", resource="category", id=category_id)


def _slug_conflict(slug: str) -> Conflict:
    return Conflict(f"A category with slug {slug!r} already exists", field="slug")


def _flush(session: Session, slug: str) -> None:
    """Flush, turning a lost race on the unique slug into the same 409 as the pre-check."""
    try:
        session.flush()
    except IntegrityError as exc:
        if "slug" in str(exc.orig):
            raise _slug_conflict(slug) from exc
        raise


def _check_depth(length: int) -> None:
    if length > MAX_PATH_LENGTH:
        raise Unprocessable("The category tree would be nested too deeply here", field="parent_id")


def _usable_parent(session: Session, parent_id: int, *, lock: str | None) -> Category:
    parent = repository.get(session, parent_id, lock=lock)
    if parent is None:
        raise Unprocessable(f"Parent category {parent_id} does not exist", field="parent_id")
    if parent.archived_at is not None:
        raise Unprocessable(
            f"Parent category {parent_id} is archived; restore it first", field="parent_id"
        )
    return parent


def get_category(*, session: Session, category_id: int) -> Category:
    category = repository.get(session, category_id)
    if category is None:
        raise _not_found(category_id)
    return category


def get_family(*, session: Session, id_or_slug: str) -> CategoryFamily:
    """Find by id when the key is a number, otherwise by slug; with ancestors and children."""
    if id_or_slug.isdigit():
        category = get_category(session=session, category_id=int(id_or_slug))
    else:
        found = repository.get_by_slug(session, id_or_slug)
        if found is None:
            raise NotFound(
                f"Category with slug {id_or_slug!r} not found", resource="category", slug=id_or_slug
            )
        category = found
    ancestor_ids = path_ids(category.path)[:-1]
    by_id = {c.id: c for c in repository.by_ids(session, ancestor_ids)}
    return CategoryFamily(
        category=category,
        ancestors=[by_id[i] for i in ancestor_ids if i in by_id],
        children=repository.active_children(session, category.id),
    )


def list_categories(
    *,
    session: Session,
    page: PageParams,
    sort: str | None,
    parent_id: int | None,
    top_level: bool,
    q: str | None,
    include_archived: bool,
) -> Slice[Category]:
    if top_level and parent_id is not None:
        raise Unprocessable(
            "Ask for the top-level categories or for a parent's children, not both",
            field="query.top_level",
        )
    require_known_ids(session, Category, [parent_id] if parent_id else [], "parent")
    order_by = parse_sort(sort, repository.SORT_COLUMNS, default="name")
    return repository.list_page(
        session,
        parent_id=parent_id,
        top_level=top_level,
        q=q.strip() if q else None,
        include_archived=include_archived,
        page=page,
        order_by=order_by,
    )


def full_names(session: Session, categories: Iterable[Category]) -> dict[int, str]:
    """Each category's name after its ancestors', "Sports / Running / Trail shoes" (one
    query for all of them)."""
    categories = list(categories)
    known = {c.id: c.name for c in categories}
    wanted = {i for c in categories for i in path_ids(c.path)} - known.keys()
    known |= {c.id: c.name for c in repository.by_ids(session, wanted)}
    return {
        c.id: FULL_NAME_SEPARATOR.join(known.get(i, "?") for i in path_ids(c.path) or [c.id])
        for c in categories
    }


def full_names_by_id(session: Session, category_ids: Collection[int]) -> dict[int, str]:
    """``full_names`` of the categories with these ids."""
    return full_names(session, repository.by_ids(session, category_ids))


@dataclass
class TreeNode:
    category: Category
    full_name: str
    children: list["TreeNode"]


def tree(*, session: Session, include_archived: bool) -> list[TreeNode]:
    """Every category nested under its parent, siblings by name: the roots' list. Without
    archived ones, an archived category's subtree is left out with it."""
    nodes: dict[int, TreeNode] = {}
    roots: list[TreeNode] = []
    for category in repository.every(session, include_archived=include_archived):
        parent = nodes.get(category.parent_id) if category.parent_id is not None else None
        if category.parent_id is not None and parent is None:
            continue  # under an archived (left out) category
        prefix = parent.full_name + FULL_NAME_SEPARATOR if parent else ""
        node = TreeNode(category, prefix + category.name, [])
        nodes[category.id] = node
        (parent.children if parent else roots).append(node)
    for node in [*roots, *nodes.values()]:
        node.children.sort(key=lambda child: (child.category.name.casefold(), child.category.id))
    return sorted(roots, key=lambda root: (root.category.name.casefold(), root.category.id))


def create_category(
    *, session: Session, data: CategoryCreate, actor_id: int | None, actor_email: str | None
) -> Category:
    """Add a category; its path is known once the database has given it an id."""
    slug = data.slug or slugify(data.name)
    if not slug or slug.isdigit():
        raise Unprocessable(
            f"Cannot derive a usable slug from the name {data.name!r}; send a slug with a letter",
            field="slug",
        )
    parent = None
    if data.parent_id is not None:
        # A shared lock: the parent cannot be archived or moved until this child is saved.
        parent = _usable_parent(session, data.parent_id, lock="share")
    if repository.slug_taken(session, slug):
        raise _slug_conflict(slug)
    category = Category(
        name=data.name,
        slug=slug,
        description=data.description,
        parent_id=data.parent_id,
        path="/",
    )
    session.add(category)
    _flush(session, slug)
    category.path = f"{parent.path if parent else '/'}{category.id}/"
    _check_depth(len(category.path))
    session.flush()
    AUDIT_TRAIL.record(
        session, "category.created", category, {}, actor_id=actor_id, actor_email=actor_email
    )
    return category


def _move(session: Session, category: Category, new_parent_id: int | None) -> None:
    """Re-parent a category and rewrite the path of its whole subtree.

    The moved row and the new parent with all its ancestors are locked in id order first:
    two moves that could together form a cycle always share one of those rows, so they run
    one after the other and the second sees the first's result.
    """
    if new_parent_id == category.id:
        raise Conflict("A category cannot be its own parent", field="parent_id")
    wanted = {category.id}
    if new_parent_id is not None:
        seen = _usable_parent(session, new_parent_id, lock=None)
        wanted |= set(path_ids(seen.path))
    locked = repository.lock_ids(session, wanted)
    if category.id not in locked:
        raise _not_found(category.id)
    new_parent = None
    if new_parent_id is not None:
        new_parent = locked.get(new_parent_id)
        if new_parent is None or not set(path_ids(new_parent.path)) <= wanted:
            raise Conflict("The category tree changed during the move; retry", field="parent_id")
        if new_parent.archived_at is not None:
            raise Unprocessable(
                f"Parent category {new_parent_id} is archived; restore it first",
                field="parent_id",
            )
        if new_parent.path.startswith(category.path):
            raise Conflict(
                f"Cannot move category {category.id} under {new_parent_id}: "
                f"{new_parent_id} is inside its subtree, which would make a cycle",
                field="parent_id",
            )
    old_prefix = category.path
    new_prefix = f"{new_parent.path if new_parent else '/'}{category.id}/"
    longest = repository.longest_path_in_subtree(session, old_prefix)
    _check_depth(longest - len(old_prefix) + len(new_prefix))
    category.parent_id = new_parent_id
    session.flush()
    repository.replace_path_prefix(session, old_prefix, new_prefix)


def update_category(
    *,
    session: Session,
    category_id: int,
    data: CategoryUpdate,
    actor_id: int | None,
    actor_email: str | None,
) -> Category:
    """Change the fields sent; a new parent_id moves the category with its subtree."""
    category = get_category(session=session, category_id=category_id)
    before = AUDIT_TRAIL.snapshot(category)
    changes = data.model_dump(exclude_unset=True)
    slug = changes.get("slug")
    if slug is not None and repository.slug_taken(session, slug, exclude_id=category.id):
        raise _slug_conflict(slug)
    if "parent_id" in changes:
        new_parent_id = changes.pop("parent_id")
        if new_parent_id != category.parent_id:
            _move(session, category, new_parent_id)
    for field, value in changes.items():
        setattr(category, field, value)
    _flush(session, slug or category.slug)
    AUDIT_TRAIL.record(
        session, "category.updated", category, before, actor_id=actor_id, actor_email=actor_email
    )
    return category


def archive_category(
    *, session: Session, category_id: int, actor_id: int | None, actor_email: str | None
) -> Category:
    """Hide a category from lists; refused while it has active subcategories or products."""
    category = repository.get(session, category_id, lock="update")
    if category is None:
        raise _not_found(category_id)
    if category.archived_at is not None:
        return category
    if repository.has_active_children(session, category.id):
        raise Conflict(
            f"Category {category.id} has active subcategories; archive or move them first",
            reason="has_active_children",
        )
    products = repository.count_active_products(session, category.id)
    if products:
        raise Conflict(
            f"Category {category.id} has {products} active product(s); "
            "archive them or move them to another category first",
            reason="has_active_products",
            active_products=products,
        )
    before = AUDIT_TRAIL.snapshot(category)
    category.archived_at = utcnow()
    session.flush()
    AUDIT_TRAIL.record(
        session, "category.archived", category, before, actor_id=actor_id, actor_email=actor_email
    )
    return category


def restore_category(
    *, session: Session, category_id: int, actor_id: int | None, actor_email: str | None
) -> Category:
    """Bring an archived category back; its parent must be active."""
    category = repository.get(session, category_id, lock="update")
    if category is None:
        raise _not_found(category_id)
    if category.archived_at is None:
        return category
    if category.parent_id is not None:
        parent = repository.get(session, category.parent_id, lock="share")
        if parent is not None and parent.archived_at is not None:
            raise Conflict(
                f"Parent category {parent.id} is archived; restore it first",
                reason="parent_archived",
            )
    before = AUDIT_TRAIL.snapshot(category)
    category.archived_at = None
    session.flush()
    AUDIT_TRAIL.record(
        session, "category.restored", category, before, actor_id=actor_id, actor_email=actor_email
    )
    return category
