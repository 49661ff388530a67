"""Domain errors and the one place they become HTTP answers.

Every error body has the same shape: ``{"error": code, "detail": sentence, ...context}``.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError
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
        return {"error": self.code, "detail": self.detail, **self.context}


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


class InsufficientStock(Conflict):
    code = "insufficient_stock"


class InvalidState(Conflict):
    code = "invalid_state"


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"


class Unprocessable(AppError):
    status_code = 422
    code = "unprocessable"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, detail: str, retry_after: int, **context: Any) -> None:
        super().__init__(detail, retry_after_seconds=retry_after, **context)
        self.headers = {"Retry-After": str(retry_after)}


class UpstreamUnavailable(AppError):
    status_code = 503
    code = "upstream_unavailable"


class ErrorBody(BaseModel):
    """The shape of every error answer; extra keys carry context (e.g. the short lines)."""

    model_config = ConfigDict(extra="allow")
    error: str
    detail: str


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


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and stray HTTP errors to the one body shape."""

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": _field_name(err["loc"]), "reason": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
        return JSONResponse(
            {"error": "validation_error", "detail": f"Invalid input: {summary}", "fields": fields},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated"}
        return JSONResponse(
            {"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def _database_error(_request: Request, exc: OperationalError) -> JSONResponse:
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        if code in LOCK_CONFLICT_CODES:
            # The transaction was rolled back whole; the same request may simply be retried.
            logger.warning("lock conflict (%s): %s", code, exc.orig)
            return JSONResponse(
                {"error": "database_busy", "detail": "The database was busy; retry the request"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        logger.error("database error: %s", exc)
        return JSONResponse(
            {"error": "database_unavailable", "detail": "The database is unavailable; retry later"},
            status_code=503,
        )
