"""Query parameters a route does not declare are refused, not ignored.

A typo in a filter (``/sales?chanel_id=3``) or a filter a route does not have
(``/inventory/levels?as_of=...``) would otherwise answer as if it were not there: every
channel, today's levels, and nothing to tell the caller. Every route of both services gets
``reject_unknown_query_parameters`` as an app-wide dependency: a 422 in the one validation
shape, one entry per unknown name (``query.<name>``), saying which names the route takes.
"""

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel


def declared_query_names(dependant: Dependant) -> frozenset[str]:
    """Every query parameter name a route (its own and its dependencies' parameters, and the
    fields of a query model) takes, by the name a caller sends (the alias)."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        for param in current.query_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                names.update(field.alias or name for name, field in model.model_fields.items())
            else:
                names.add(param.alias)
        pending.extend(current.dependencies)
    return frozenset(names)


async def reject_unknown_query_parameters(request: Request) -> None:
    if not request.scope.get("query_string"):  # most writes (a sale): nothing to look at
        return
    route: Any = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    # (a route left out of the documents declares nothing a caller could follow: e.g. the
    # 405 of a read-only path, which must not turn into a 422 over its query)
    if dependant is None or not route.include_in_schema:
        return
    known: frozenset[str] | None = getattr(route, "_declared_query_names", None)
    if known is None:  # worked out once per route
        known = declared_query_names(dependant)
        route._declared_query_names = known
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        takes = ", ".join(sorted(known)) if known else "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter (this route takes: {takes})",
                    "type": "unknown_parameter",
                }
                for name in unknown
            ]
        )


def install_query_check(app: FastAPI) -> None:
    """Make every route included after this refuse undeclared query parameters."""
    app.router.dependencies.append(Depends(reject_unknown_query_parameters))
