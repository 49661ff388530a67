"""The admin dashboard (dashboard/ at the repository root), served at /dashboard/.

The dashboard is a static single-page app without a build step. It calls both services from
the browser as any third party would: with a bearer token, products_service on its own
origin and sales_service cross-origin (CORS). Its one piece of server-side state is where
sales_service answers, served as ``/dashboard/config.json``.

Its pages get their own Content-Security-Policy in place of the API's "nothing at all": scripts,
styles and images from this origin only (no inline script), and connections to this origin
and to sales_service.
"""

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from common.settings import REPO_ROOT, ProductsSettings

DASHBOARD_DIR = REPO_ROOT / "dashboard"
DASHBOARD_PATH = "/dashboard"
# What the page loads; the rest of dashboard/ (its lint tooling and node_modules, READMEs) is
# the repository's, not the site's.
SERVED_FILES = frozenset({".", "index.html", "app.css"})
SERVED_FOLDERS = ("js/", "vendor/")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as a browser compares origins."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def dashboard_content_security_policy(sales_url: str) -> str:
    """Only this origin's files run; the page may call this origin and sales_service."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"connect-src 'self' {origin_of(sales_url)}",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


class DashboardFiles(StaticFiles):
    """The dashboard's files (only those the page loads) with their page policy, revalidated
    on each load (no stale app after an upgrade: an unchanged file answers 304)."""

    def __init__(self, *, directory: Path, policy: str) -> None:
        super().__init__(directory=directory, html=True)
        self.policy = policy

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in SERVED_FILES and not path.startswith(SERVED_FOLDERS):
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = self.policy
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def install_dashboard(app: FastAPI, settings: ProductsSettings) -> None:
    """Serve dashboard/ at /dashboard/ with its config, unless turned off or not shipped."""
    if not settings.dashboard_enabled or not (DASHBOARD_DIR / "index.html").is_file():
        return
    policy = dashboard_content_security_policy(settings.dashboard_sales_url)
    config = {
        "products_url": "",  # this origin
        "sales_url": settings.dashboard_sales_url.rstrip("/"),
        "store_timezone": settings.store_timezone,
    }

    @app.get(f"{DASHBOARD_PATH}/config.json", include_in_schema=False)
    def dashboard_config() -> JSONResponse:
        """Where the dashboard finds the two services."""
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    @app.get(DASHBOARD_PATH, include_in_schema=False)
    def dashboard_root() -> RedirectResponse:
        """The dashboard lives under a trailing slash, so its relative links resolve."""
        return RedirectResponse(f"{DASHBOARD_PATH}/")

    app.mount(
        DASHBOARD_PATH,
        DashboardFiles(directory=DASHBOARD_DIR, policy=policy),
        name="dashboard",
    )
