"""What both FastAPI apps share: database wiring, error handling, CORS, health, readiness,
request ids, structured logs and metrics."""

import gc
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from common.auth.service import ensure_admin
from common.bodies import BodyGuard
from common.db import make_engine, make_sessionmaker
from common.errors import install_error_handlers
from common.headers import install_security_headers
from common.observability import REQUEST_ID_HEADER, configure_logging, install_observability
from common.openapi import install_openapi
from common.query import install_query_check
from common.ratelimit import RATE_LIMIT_HEADERS, install_rate_limit
from common.settings import CommonSettings

logger = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def attach_database(app: FastAPI, settings: CommonSettings) -> None:
    """Give the app its engine and session factory (kept on app.state, one per process)."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)


def limit_worker_threads(settings: CommonSettings) -> None:
    """How many blocking route calls run at once in this process; call it at start-up."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads


def freeze_startup_heap() -> None:
    """Put every object made so far (modules, the app, its routes, models and schemas) out
    of the garbage collector's sight; call it once start-up is done.

    They live as long as the process, yet each full collection would walk all of them
    again: in a bulk import (many objects made and kept a batch at a time, so collections
    run often) that walk was a fifth of the CPU. What is made after this is collected as
    usual."""
    gc.collect()
    gc.freeze()


def seed_first_admin(app: FastAPI) -> None:
    """Create the admin named in settings if missing; harmless when several processes race."""
    settings: CommonSettings = app.state.settings
    try:
        with app.state.sessionmaker() as session:
            ensure_admin(
                session=session,
                email=settings.first_admin_email,
                password=settings.first_admin_password.get_secret_value(),
            )
            session.commit()
    except IntegrityError:
        logger.info("first admin was created by another process")


def install_common(
    app: FastAPI,
    settings: CommonSettings,
    dependencies: Mapping[str, Callable[[FastAPI], bool]] | None = None,
) -> None:
    """Logging, error handlers, CORS, the rate limit, request ids, /metrics, security headers
    and the /health and /ready probes.

    ``dependencies`` are extra readiness checks by name (e.g. the products_service).
    """
    configure_logging()
    install_error_handlers(app)
    # Innermost: a body is checked (size, JSON that could never be stored) before any route.
    app.add_middleware(
        BodyGuard,
        max_body_bytes=settings.max_body_bytes,
        upload_limits={f"{API_PREFIX}/imports/": settings.import_max_bytes},
    )
    install_openapi(app)
    install_query_check(app)  # (routes included after this)
    install_rate_limit(app, settings)  # inside CORS: a 429 carries its CORS headers
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        # What a browser's script may read of an answer: a replayed retry, an export's
        # file name, when to retry, the request id to quote, the rate limit's figures.
        expose_headers=[
            "Retry-After",
            "Idempotency-Key",
            "Idempotent-Replayed",
            "Content-Disposition",
            REQUEST_ID_HEADER,
            *RATE_LIMIT_HEADERS,
        ],
    )
    # Added after CORS, so it wraps it: preflights get an id and are counted too.
    install_observability(app, settings)
    install_security_headers(app, settings)
    # Outermost, so every layer inside (rate limit, logs, login throttling) sees the client.
    if settings.forwarded_allow_ips:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    probes = APIRouter(tags=["health"])

    @probes.get("/health", summary="Liveness: the process answers")
    def get_health() -> dict[str, str]:
        """Always ok while the process is serving requests."""
        return {"status": "ok"}

    @probes.get(
        "/ready",
        summary="Readiness: the database answers",
        responses={503: {"description": "The database or a called service is unreachable"}},
    )
    def get_readiness(request: Request) -> Any:
        """Ok when the database (and every service this one calls) answers; 503 naming what
        does not otherwise."""
        checks: dict[str, str] = {}
        try:
            with request.app.state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any driver error means not ready
            logger.warning("readiness: database unreachable: %s", exc)
            checks["database"] = "unavailable"
        for name, check in (dependencies or {}).items():
            checks[name] = "ok" if check(request.app) else "unavailable"
        down = [name for name, state in checks.items() if state != "ok"]
        if down:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "error": "dependency_unavailable",
                    "detail": f"Unavailable: {', '.join(down)}",
                    **checks,
                },
                status_code=503,
            )
        return {"status": "ok", **checks}

    app.include_router(probes)
