"""SQL for the category tree."""

from collections.abc import Collection
from typing import Any

from sqlalchemy import String, exists, func, literal, select, update
from sqlalchemy.orm import Session

from common.models import Category, Product
from common.pagination import PageParams, Slice, first, paginate

SORT_COLUMNS: dict[str, Any] = {
    "name": Category.name,
    "slug": Category.slug,
    "created_at": Category.created_at,
}


def get(session: Session, category_id: int, *, lock: str | None = None) -> Category | None:
    """One category; ``lock`` is "share" or "update" to hold its row until the transaction ends."""
    stmt = select(Category).where(Category.id == category_id)
    if lock is not None:
        stmt = stmt.with_for_update(read=lock == "share").execution_options(populate_existing=True)
    return session.scalar(stmt)


def get_by_slug(session: Session, slug: str) -> Category | None:
    return session.scalar(select(Category).where(Category.slug == slug))


def slug_taken(session: Session, slug: str, *, exclude_id: int | None = None) -> bool:
    stmt = select(Category.id).where(Category.slug == slug)
    if exclude_id is not None:
        stmt = stmt.where(Category.id != exclude_id)
    return session.scalar(stmt.limit(1)) is not None


def by_ids(session: Session, ids: Collection[int]) -> list[Category]:
    if not ids:
        return []
    return list(session.scalars(select(Category).where(Category.id.in_(ids))))


def lock_ids(session: Session, ids: Collection[int]) -> dict[int, Category]:
    """Lock these rows in id order (so two callers cannot deadlock) and return them fresh."""
    stmt = (
        select(Category)
        .where(Category.id.in_(ids))
        .order_by(Category.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {c.id: c for c in session.scalars(stmt)}


def active_children(session: Session, parent_id: int) -> list[Category]:
    return list(
        session.scalars(
            select(Category)
            .where(Category.parent_id == parent_id, Category.archived_at.is_(None))
            .order_by(Category.name, Category.id)
        )
    )


def has_active_children(session: Session, category_id: int) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(Category.parent_id == category_id, Category.archived_at.is_(None))
            )
        )
    )


def count_active_products(session: Session, category_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                Product.category_id == category_id, Product.archived_at.is_(None)
            )
        )
        or 0
    )


def longest_path_in_subtree(session: Session, prefix: str) -> int:
    return (
        session.scalar(
            select(func.max(func.length(Category.path))).where(
                Category.path.startswith(prefix, autoescape=True)
            )
        )
        or 0
    )


def replace_path_prefix(session: Session, old_prefix: str, new_prefix: str) -> None:
    """Re-root a whole subtree in one statement: every path starting with old gets new instead."""
    rest = func.substr(Category.path, len(old_prefix) + 1, type_=String)
    session.execute(
        update(Category)
        .where(Category.path.startswith(old_prefix, autoescape=True))
        .values(path=literal(new_prefix, String) + rest),
        execution_options={"synchronize_session": "fetch"},
    )


def every(session: Session, *, include_archived: bool) -> list[Category]:
    """The whole tree's rows, parents before children (by path, then name)."""
    stmt = select(Category).order_by(func.length(Category.path), Category.name, Category.id)
    if not include_archived:
        stmt = stmt.where(Category.archived_at.is_(None))
    return list(session.scalars(stmt))


def list_page(
    session: Session,
    *,
    parent_id: int | None,
    top_level: bool,
    q: str | None,
    include_archived: bool,
    page: PageParams,
    order_by: list[Any],
) -> Slice[Category]:
    """One page of categories matching the filters, and how many match in all."""
    stmt = select(Category)
    if parent_id is not None:
        stmt = stmt.where(Category.parent_id == parent_id)
    if top_level:
        stmt = stmt.where(Category.parent_id.is_(None))
    if q:
        stmt = stmt.where(func.lower(Category.name).contains(q.lower(), autoescape=True))
    if not include_archived:
        stmt = stmt.where(Category.archived_at.is_(None))
    return paginate(session, stmt, page, [*order_by, Category.id.asc()]).map(first)
