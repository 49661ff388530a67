"""Domain errors and the one place they become HTTP answers.

Every error body has the same shape: ``{"error": code, "detail": sentence, ...context}``.
"""

import logging
import os
import re
import traceback
from typing import Any, Literal

import pymysql
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

# MySQL/MariaDB: 1213 deadlock, 1205 lock wait timeout.
LOCK_CONFLICT_CODES = {1213, 1205}


class AppError(Exception):
    """Base of every error a service raises on purpose."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        """``{"error", "detail", ...context}``; an error about one input (``field=``) also
        lists it in ``fields`` as a validation error does, so a client maps every error
        onto its form the same way."""
        context = dict(self.context)
        field = context.pop("field", None)
        body = {"error": self.code, "detail": self.detail, **context}
        if field is not None:
            body["fields"] = [{"field": located(field), "reason": self.detail, "type": self.code}]
        return body


LOCATIONS = ("body", "query", "header", "path")


def located(field: str) -> str:
    """Where an input is, as validation errors say it: ``slug`` -> ``body.slug``; a name
    that says where it is already (``query.sort``) is kept."""
    return field if field.split(".", 1)[0] in LOCATIONS else f"body.{field}"


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    status_code = 401
    code = "not_authenticated"

    def __init__(self, detail: str = "Not authenticated", **context: Any) -> None:
        super().__init__(detail, **context)
        self.headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


def short_line_name(line: dict[str, Any]) -> str:
    """A short line's product (its SKU, when known) and the warehouse it named, if any."""
    product = line.get("sku") or f"product {line['product_id']}"
    if line.get("warehouse_id") is None:
        return product
    return f"{product} in warehouse {line.get('warehouse_code') or line['warehouse_id']}"


class InsufficientStock(Conflict):
    """Not enough stock. With ``lines`` (the short lines of a request, ``line_no`` counted
    from 1), each is also listed in ``fields`` at its place in the request's body
    (``body.lines.0.quantity``), so a form marks it as it marks any other bad input."""

    code = "insufficient_stock"

    def body(self) -> dict[str, Any]:
        body = super().body()
        lines = self.context.get("lines")
        if lines:
            body["fields"] = [
                {
                    "field": f"body.lines.{line['line_no'] - 1}.quantity",
                    "reason": f"requested {line['requested']}, {line['available']} available"
                    f" ({short_line_name(line)})",
                    "type": self.code,
                }
                for line in lines
            ]
        return body


class InvalidState(Conflict):
    code = "invalid_state"


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"


class Unprocessable(AppError):
    status_code = 422
    code = "unprocessable"


class InvalidInput(Unprocessable):
    """An input its schema lets through but that cannot be used (a cursor of another list):
    answered as a schema violation is, with ``field`` set, so it matches ValidationErrorBody."""

    code = "validation_error"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, detail: str, retry_after: int, **context: Any) -> None:
        super().__init__(detail, retry_after_seconds=retry_after, **context)
        self.headers = {"Retry-After": str(retry_after)}


class UpstreamUnavailable(AppError):
    status_code = 503
    code = "upstream_unavailable"


class FieldError(BaseModel):
    """One bad input: where it is (e.g. ``body.price``, ``query.limit``) and what is wrong."""

    field: str
    reason: str
    type: str


class ErrorBody(BaseModel):
    """The shape of every error answer; extra keys carry context (e.g. the short lines)."""

    model_config = ConfigDict(extra="allow")
    error: str
    detail: str
    fields: list[FieldError] | None = Field(
        default=None, description="The inputs at fault, when the error is about some"
    )


class ValidationErrorBody(ErrorBody):
    """The 422 answer to input that does not match the schema; every bad field is listed."""

    error: Literal["validation_error"]
    fields: list[FieldError]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    descriptions = {
        400: "Bad request",
        401: "Missing, invalid, expired or revoked token",
        403: "The caller's role may not do this",
        404: "Not found",
        409: "Conflict with the current state",
        422: "Invalid input; each bad field is listed",
        429: "Too many attempts",
        503: "A dependency is unavailable",
    }
    return {c: {"model": ErrorBody, "description": descriptions.get(c, "Error")} for c in codes}


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_answer(fields: list[FieldError]) -> JSONResponse:
    summary = "; ".join(f"{f.field}: {f.reason}" for f in fields)
    body = ValidationErrorBody(
        error="validation_error", detail=f"Invalid input: {summary}", fields=fields
    )
    return JSONResponse(body.model_dump(), status_code=422)


_PATH_PARAMETER = re.compile(r"\\\{[^/]+?\\\}")
_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API documents for this request's path (Starlette would name only
    those of the first route that matches it)."""
    path = request.url.path
    matched = [
        (template, operations)
        for template, operations in request.app.openapi().get("paths", {}).items()
        if re.fullmatch(_PATH_PARAMETER.sub("[^/]+", re.escape(template)), path)
    ]
    # A path spelt out (/categories/tree) is that route's, not a parameter's value as well.
    literal = [(t, ops) for t, ops in matched if t == path]
    methods = {m.upper() for _, ops in literal or matched for m in ops if m in _HTTP_METHODS}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and stray HTTP errors to the one body shape."""

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_answer(
            [
                FieldError(field=_field_name(err["loc"]), reason=err["msg"], type=err["type"])
                for err in exc.errors()
            ]
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # Our code never raises HTTPException: this is FastAPI failing to read the body
            # (not UTF-8, a broken form). It is bad input like any other, so it gets the
            # documented 422 shape instead of an undeclared 400.
            cause = exc.__cause__
            reason = f"could not be read ({type(cause).__name__})" if cause else str(exc.detail)
            return _validation_answer(
                [FieldError(field="body", reason=reason, type="body_unreadable")]
            )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            headers["Allow"] = ", ".join(allowed)
        codes = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated"}
        return JSONResponse(
            {"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers or None,
        )

    @app.exception_handler(OperationalError)
    async def _database_error(_request: Request, exc: OperationalError) -> JSONResponse:
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        return _database_failed(code, exc)

    # The driver's own, where a read goes past SQLAlchemy (a report's first statement, sent
    # before its answer is wanted): the connection lost or closed under it.
    @app.exception_handler(pymysql.err.OperationalError)
    @app.exception_handler(pymysql.err.InterfaceError)
    async def _driver_error(_request: Request, exc: Exception) -> JSONResponse:
        return _database_failed(exc.args[0] if exc.args else None, exc)

    def _database_failed(code: Any, error: Exception) -> JSONResponse:
        if code in LOCK_CONFLICT_CODES:
            # The transaction was rolled back whole; the same request may simply be retried.
            logger.warning("lock conflict (%s): %s", code, error)
            return JSONResponse(
                {"error": "database_busy", "detail": "The database was busy; retry the request"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        logger.error("database error: %s", error)
        return JSONResponse(
            {"error": "database_unavailable", "detail": "The database is unavailable; retry later"},
            status_code=503,
        )

    # The last resorts: every answer keeps the error shape, whatever slipped past the checks.
    # The session dependency has rolled the request's transaction back: nothing is written.
    refusals: dict[type[Exception], tuple[int, str, str]] = {
        DataError: (
            422,
            "value_out_of_range",
            "A value is out of range for what can be stored (too large, too long or "
            "malformed); nothing was written",
        ),
        IntegrityError: (
            409,
            "conflict",
            "The change conflicts with existing data (a duplicate or a missing reference); "
            "nothing was written",
        ),
    }

    async def _refused_by_database(_request: Request, exc: Exception) -> JSONResponse:
        kind = DataError if _unstorable_integer(exc) else type(exc)
        status_code, code, detail = next(v for k, v in refusals.items() if issubclass(kind, k))
        logger.warning("refused by the database (%s): %s", code, getattr(exc, "orig", exc))
        return JSONResponse({"error": code, "detail": detail}, status_code=status_code)

    for kind in refusals:
        app.add_exception_handler(kind, _refused_by_database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        from common.observability import current_request_id  # it imports this module

        if _unstorable_integer(exc):
            return await _refused_by_database(request, exc)
        request_id = current_request_id()
        logger.error("unhandled error (request %s)", request_id, exc_info=exc)
        return JSONResponse(
            {
                "error": "internal_error",
                "detail": "Something unexpected went wrong; nothing was written. The error "
                f"is logged under request id {request_id or 'unknown'}",
                "request_id": request_id,
            },
            status_code=500,
        )


def _unstorable_integer(exc: Exception) -> bool:
    """SQLite's driver refusing to bind an integer beyond 64 bits (an id or a number in the
    request far larger than anything stored): MariaDB answers the same input with a DataError,
    or by finding no row. The driver raises a bare OverflowError, told from one of our own by
    where it was raised: binding the statement's parameters."""
    if not isinstance(exc, OverflowError):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(_DRIVER_CALLS)


# Where SQLAlchemy hands a statement and its parameters to the driver.
_DRIVER_CALLS = (f"sqlalchemy{os.sep}engine{os.sep}default.py",)


def error_examples() -> dict[int, dict[str, Any]]:
    """One answer per error status, as the handlers send it, for the OpenAPI document."""
    validation = ValidationErrorBody(
        error="validation_error",
        detail="Invalid input: body.price: at most 2 decimal places",
        fields=[FieldError(field="body.price", reason="at most 2 decimal places", type="decimal")],
    )
    return {
        400: BadRequest(
            "Cannot sort by 'colour'; choose from: created_at, name", field="query.sort"
        ).body(),
        401: Unauthorized("Not authenticated: send 'Authorization: Bearer <token>'").body(),
        403: Forbidden("Role 'viewer' may not do this; requires one of: admin, manager").body(),
        404: NotFound("Product 42 not found", resource="product", id=42).body(),
        409: Conflict("A product with SKU 'MUG-1' already exists", field="sku").body(),
        413: {
            "error": "payload_too_large",
            "detail": "The request body is larger than 1048576 bytes",
            "max_bytes": 1048576,
        },
        422: validation.model_dump(),
        429: TooManyRequests(
            "Too many failed logins to this account from this address; try again in 30 seconds",
            retry_after=30,
        ).body(),
        503: UpstreamUnavailable(
            "products_service unreachable: connection refused", upstream="products_service"
        ).body(),
    }
