"""products_service: catalog, warehouses, inventory ledger and stock reservations (port 8000)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common import outbox
from common.app import (
    API_PREFIX,
    attach_database,
    freeze_startup_heap,
    install_common,
    limit_worker_threads,
    seed_first_admin,
)
from common.audit import router as audit_router
from common.auth.router import router as auth_router
from common.auth.router import users_router
from common.import_jobs import jobs_router, reap_every
from common.settings import ProductsSettings, get_products_settings
from common.streams.feed import attach_feed
from common.streams.router import router as stream_token_router
from common.webhooks.router import router as webhooks_router
from common.webhooks.worker import run_webhooks
from products_service.categories.router import router as categories_router
from products_service.dashboard import install_dashboard
from products_service.exports.router import router as exports_router
from products_service.imports.router import JOB_KINDS
from products_service.imports.router import router as imports_router
from products_service.inventory.alerts import BATCH as ALERTS_BATCH
from products_service.inventory.alerts import consume_once as consume_stock_alerts
from products_service.inventory.router import router as inventory_router
from products_service.products.router import router as products_router
from products_service.reservations.router import router as reservations_router
from products_service.reservations.service import expire_due_reservations
from products_service.sale_stock.router import router as sale_stock_router
from products_service.streams.router import router as events_router
from products_service.warehouses.router import router as warehouses_router

logger = logging.getLogger(__name__)


async def _sweep_expired_reservations(app: FastAPI, every: float) -> None:
    """Return the stock of expired reservations; every replica may run this safely."""
    while True:
        try:
            await asyncio.to_thread(expire_due_reservations, sessions=app.state.sessionmaker)
        except Exception:
            logger.exception("reservation sweep failed; retrying")
        await asyncio.sleep(every)


async def _stock_alert_loop(app: FastAPI, every: float) -> None:
    """Announce stock health changes from the products outbox (one replica at a time does it,
    every replica may run this)."""
    while True:
        try:
            read = await asyncio.to_thread(consume_stock_alerts, app.state.engine)
        except Exception:
            logger.exception("stock alerts consumer failed; retrying")
            read = 0
        if read < ALERTS_BATCH:  # caught up: let the next events gather into one pass
            await asyncio.sleep(every)


# The order the API docs list their groups in (the routes are matched in another order).
DOCUMENTED_TAGS = (
    "health",
    "auth",
    "users",
    "categories",
    "products",
    "warehouses",
    "inventory",
    "reservations",
    "sale stock",
    "audit",
    "events",
    "webhooks",
    "imports",
    "exports",
)


def create_app(settings: ProductsSettings | None = None) -> FastAPI:
    """Build the products app; tests pass their own settings."""
    settings = settings or get_products_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_worker_threads(settings)
        seed_first_admin(app)
        feed = attach_feed(
            app, service="products_service", table=outbox.PRODUCTS_OUTBOX, settings=settings
        )
        loops = [
            asyncio.create_task(
                _sweep_expired_reservations(app, settings.reservation_sweep_seconds)
            ),
            asyncio.create_task(_stock_alert_loop(app, settings.alert_poll_seconds)),
            asyncio.create_task(reap_every(app, "products")),
            asyncio.create_task(run_webhooks(settings, sources=("products", "sales"))),
        ]
        yield
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await feed.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="Products service",
        version="1.0.0",
        summary="Catalog, warehouses, inventory ledger and stock reservations.",
        description=(
            "Log in with `POST /api/v1/auth/login` (or the **Authorize** button), then send "
            "`Authorization: Bearer <token>`. Money is a decimal string, times are ISO 8601 "
            "with an offset, lists take `limit`/`offset`/`sort` and answer with `total`."
        ),
        lifespan=lifespan,
        openapi_tags=[{"name": name} for name in DOCUMENTED_TAGS],
    )
    attach_database(app, settings)
    app.state.import_job_kinds = JOB_KINDS
    install_common(app, settings)
    for router in (
        # First: a request goes to the first route that matches, and FastAPI matches each
        # route of every router included before it; this one is called on every sale.
        sale_stock_router,
        auth_router,
        users_router,
        categories_router,
        products_router,
        warehouses_router,
        inventory_router,
        reservations_router,
        audit_router,
        stream_token_router,
        events_router,
        webhooks_router,
        imports_router,
        jobs_router("products"),
        exports_router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    install_dashboard(app, settings)
    return app


app = create_app()
freeze_startup_heap()  # what importing the app made lives as long as the process
