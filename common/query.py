"""Query parameters a route does not declare are refused, not ignored; so is a second value
of a parameter that takes one; and an id filter naming no row is a 422 (``require_known_ids``).

A typo in a filter (``/sales?chanel_id=3``) or a filter a route does not have
(``/inventory/levels?as_of=...``) would otherwise answer as if it were not there: every
channel, today's levels, and nothing to tell the caller. A filter that takes one value sent
twice (``/sales?limit=5&limit=50``) would be answered for the last value alone.
Every route of both services gets ``reject_unknown_query_parameters`` as an app-wide
dependency: a 422 in the one validation shape, one entry per name at fault
(``query.<name>``), saying which names the route takes or that the name takes one value.
"""

from collections.abc import Iterable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from common.db import connection_of, number_list
from common.errors import InvalidInput
from common.models import Category


def declared_query_names(dependant: Dependant) -> dict[str, bool]:
    """Every query parameter name a route (its own and its dependencies' parameters, and the
    fields of a query model) takes, by the name a caller sends (the alias), and whether it
    may be repeated (a list of values)."""
    names: dict[str, bool] = {}
    pending = [dependant]
    while pending:
        current = pending.pop()
        for param in current.query_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                for name, field in model.model_fields.items():
                    names[field.alias or name] = field_annotation_is_sequence(field.annotation)
            else:
                names[param.alias] = field_annotation_is_sequence(model)
        pending.extend(current.dependencies)
    return names


async def reject_unknown_query_parameters(request: Request) -> None:
    if not request.scope.get("query_string"):  # most writes (a sale): nothing to look at
        return
    route: Any = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    # (a route left out of the documents declares nothing a caller could follow: e.g. the
    # 405 of a read-only path, which must not turn into a 422 over its query)
    if dependant is None or not route.include_in_schema:
        return
    known: dict[str, bool] | None = getattr(route, "_declared_query_names", None)
    if known is None:  # worked out once per route
        known = declared_query_names(dependant)
        route._declared_query_names = known
    sent = request.query_params.multi_items()
    unknown = [name for name in dict.fromkeys(name for name, _ in sent) if name not in known]
    takes = ", ".join(sorted(known)) if known else "none"
    problems = [
        {
            "loc": ("query", name),
            "msg": f"unknown query parameter (this route takes: {takes})",
            "type": "unknown_parameter",
        }
        for name in unknown
    ]
    counts: dict[str, int] = {}
    for name, _ in sent:
        counts[name] = counts.get(name, 0) + 1
    problems += [
        {
            "loc": ("query", name),
            "msg": f"sent {count} times; it takes one value",
            "type": "repeated_parameter",
        }
        for name, count in counts.items()
        if count > 1 and known.get(name) is False
    ]
    if problems:
        raise RequestValidationError(problems)


def install_query_check(app: FastAPI) -> None:
    """Make every route included after this refuse undeclared query parameters."""
    app.router.dependencies.append(Depends(reject_unknown_query_parameters))


def require_known_ids(db: Session | Connection, model: Any, ids: Iterable[int], name: str) -> None:
    """A filter's ids that name no row of ``model`` are a 422 naming them (``query.<name>_id``,
    with the ``unknown`` ids), on every list, report, export and stream alike: a stale link
    or a typo is told so, instead of getting an empty page that reads as "no sales" or "no
    stock". (An id in the path that names nothing is a 404: there, the thing is the resource.)
    """
    wanted = {int(i) for i in ids}
    if not wanted:
        return
    # the ids written in (an ORM select with an expanding IN took 1 ms of a report)
    found = connection_of(db).exec_driver_sql(
        f"SELECT id FROM {model.__tablename__} WHERE id IN ({number_list(wanted)})"  # noqa: S608
    )
    if missing := wanted - {int(row[0]) for row in found}:
        raise unknown_ids(name, missing)


def category_paths(db: Session | Connection, category_ids: Iterable[int]) -> list[str]:
    """The tree paths of the categories a filter names (the rows in their subtrees are the
    ones it matches), in one query; unknown ones are the 422 of ``require_known_ids``."""
    wanted = list(dict.fromkeys(category_ids))
    if not wanted:
        return []
    found = db.execute(select(Category.id, Category.path).where(Category.id.in_(wanted)))
    paths = {row.id: row.path for row in found}
    if missing := set(wanted) - set(paths):
        raise unknown_ids("category", missing)
    return [paths[one] for one in wanted]


def unknown_ids(name: str, missing: Iterable[int]) -> InvalidInput:
    """The 422 of ``require_known_ids``, for a caller that found the missing ids itself."""
    ids = sorted(missing)
    return InvalidInput(
        f"Unknown {name} id(s) {', '.join(map(str, ids))}: remove them or use ids that exist",
        field=f"query.{name}_id",
        unknown=ids,
    )
