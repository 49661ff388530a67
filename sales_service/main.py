"""sales_service: records sales across the two services and analyses revenue (port 8001)."""

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
from common.auth.security import ServiceCredential
from common.import_jobs import jobs_router, reap_every
from common.settings import SalesSettings, get_sales_settings
from common.streams.feed import attach_feed
from common.streams.router import router as stream_token_router
from common.webhooks.router import router as webhooks_router
from sales_service.channels.router import router as channels_router
from sales_service.clients.products import ProductsClient
from sales_service.imports.router import JOB_KINDS
from sales_service.imports.router import router as imports_router
from sales_service.refunds.router import router as refunds_router
from sales_service.reports import inmemory
from sales_service.reports.consumer import BATCH as ROLLUP_BATCH
from sales_service.reports.consumer import consume_once
from sales_service.reports.router import router as reports_router
from sales_service.sales.reconciler import reconcile_once
from sales_service.sales.router import router as sales_router
from sales_service.stock_sync import ensure_service_user, sync_pending_refunds
from sales_service.streams.router import router as events_router
from sales_service.streams.today import TodayFigures

logger = logging.getLogger(__name__)


async def _sync_loop(app: FastAPI, settings: SalesSettings) -> None:
    while True:
        await asyncio.sleep(settings.stock_sync_seconds)
        try:
            await asyncio.to_thread(
                sync_pending_refunds,
                sessions=app.state.sessionmaker,
                products_client=app.state.products_client,
                settings=settings,
                service_user_id=app.state.service_user_id,
            )
        except Exception:
            logger.exception("refund stock sync failed; retrying")
        try:
            await asyncio.to_thread(
                reconcile_once,
                engine=app.state.engine,
                sessions=app.state.sessionmaker,
                products_client=app.state.products_client,
                grace_seconds=settings.stock_reconcile_grace_seconds,
            )
        except Exception:
            logger.exception("sale stock reconciliation failed; retrying")


async def _rollup_loop(app: FastAPI, settings: SalesSettings) -> None:
    """Keep the report rollups up with the sales outbox (one replica at a time does it)."""
    while True:
        try:
            read = await asyncio.to_thread(consume_once, app.state.engine)
        except Exception:
            logger.exception("report rollup consumer failed; retrying")
            read = 0
        if read < ROLLUP_BATCH:  # caught up: let the next events gather into one pass
            await asyncio.sleep(settings.rollup_poll_seconds)


def create_app(settings: SalesSettings | None = None) -> FastAPI:
    """Build the sales app; tests pass their own settings."""
    settings = settings or get_sales_settings()
    inmemory.ENABLED = settings.reports_in_memory
    inmemory.ZONES = (settings.store_timezone,)  # its days' edge hours' lines held in memory

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_worker_threads(settings)
        seed_first_admin(app)
        app.state.service_user_id = ensure_service_user(app.state.sessionmaker)
        inmemory.current(app.state.engine)  # the copy of the report rollups starts loading
        feed = attach_feed(
            app,
            service="sales_service",
            table=outbox.SALES_OUTBOX,
            settings=settings,
            derivation=TodayFigures(app.state.engine),
        )
        loops = [
            asyncio.create_task(_sync_loop(app, settings)),
            asyncio.create_task(_rollup_loop(app, settings)),
            asyncio.create_task(reap_every(app, "sales")),
            # (webhooks of sales events are fanned out and delivered by products_service:
            # see common.webhooks.delivery)
        ]
        yield
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await feed.close()
        app.state.products_client.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="Sales service",
        version="1.0.0",
        summary="Records sales (taking their stock in products_service) and analyses revenue.",
        description=(
            "Log in with `POST /api/v1/auth/login` (or the **Authorize** button); the same "
            "token works on products_service. Money is a decimal string, times are ISO 8601 "
            "with an offset, lists take `limit`/`offset`/`sort` and answer with `total`."
        ),
        lifespan=lifespan,
    )
    attach_database(app, settings)
    app.state.import_job_kinds = JOB_KINDS
    app.state.products_client = ProductsClient(
        settings.products_service_url,
        timeout_seconds=settings.products_timeout_seconds,
        retries=settings.products_retries,
        credential=ServiceCredential("sales_service", settings),
    )
    install_common(app, settings, {"products_service": lambda a: a.state.products_client.ready()})
    for router in (
        auth_router,
        channels_router,
        sales_router,
        refunds_router,
        reports_router,
        audit_router,
        stream_token_router,
        events_router,
        webhooks_router,
        imports_router,
        jobs_router("sales"),
    ):
        app.include_router(router, prefix=API_PREFIX)
    return app


app = create_app()
freeze_startup_heap()  # what importing the app made lives as long as the process
