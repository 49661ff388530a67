"""What both FastAPI apps share: database wiring, error handling, CORS, health and readiness."""

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from common.auth.service import ensure_admin
from common.db import make_engine, make_sessionmaker
from common.errors import install_error_handlers
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


def install_common(app: FastAPI, settings: CommonSettings) -> None:
    """Error handlers, CORS and the /health and /ready probes."""
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "Idempotency-Key"],
    )
    probes = APIRouter(tags=["health"])

    @probes.get("/health", summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        """Always ok while the process is serving requests."""
        return {"status": "ok"}

    @probes.get(
        "/ready",
        summary="Readiness: the database answers",
        responses={503: {"description": "The database is unreachable"}},
    )
    def ready(request: Request) -> Any:
        """Ok when a query reaches the database; 503 naming what failed otherwise."""
        try:
            with request.app.state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means not ready
            logger.warning("readiness check failed: %s", exc)
            return JSONResponse(
                {
                    "status": "unavailable",
                    "error": "database_unavailable",
                    "detail": "The database is unreachable",
                },
                status_code=503,
            )
        return {"status": "ok", "database": "ok"}

    app.include_router(probes)
