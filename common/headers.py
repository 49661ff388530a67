"""Security headers on every answer: JSON, errors, 404s, CORS preflights, the bare 500 of an
unhandled exception, and the Swagger and ReDoc pages.

The API answers JSON (and CSV, and /metrics text) that no browser should render, frame or
run anything from: their Content-Security-Policy allows nothing at all. The docs pages are
FastAPI's own HTML, which loads Swagger UI and ReDoc from the jsDelivr CDN (ReDoc also
Google Fonts and a web worker from a blob) and starts them with an inline script: their
policy allows just those origins, and that inline script by its hash, computed from the
page as it is served, so no other inline script can run there.

Strict-Transport-Security is sent only with ``SHOP_BEHIND_HTTPS=true``: a browser that saw
it over plain HTTP would refuse the service until it is served over HTTPS.
"""

import base64
import hashlib
import re

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.settings import CommonSettings

API_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_CDN = "https://cdn.jsdelivr.net"
# What FastAPI's get_swagger_ui_html and get_redoc_html load by default.
_DOCS_SOURCES = {
    "script-src": f"'self' {_CDN}",
    "style-src": f"'self' {_CDN} https://fonts.googleapis.com 'unsafe-inline'",
    "font-src": "https://fonts.gstatic.com",
    "img-src": "'self' data: https://fastapi.tiangolo.com",
    "connect-src": "'self'",
    "worker-src": "blob:",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
}
HSTS = "max-age=31536000"
# An inline <script> (one without src): the docs pages' start-up code.
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.DOTALL)


def docs_content_security_policy(html: bytes) -> str:
    """The docs page's policy: its CDN origins, and its own inline scripts by hash."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    sources = {**_DOCS_SOURCES, "script-src": f"{_DOCS_SOURCES['script-src']} {hashes}".strip()}
    directives = [
        "default-src 'none'",
        *(f"{name} {value}" for name, value in sources.items()),
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
    return "; ".join(directives)


def _with_headers(message: Message, headers: list[tuple[bytes, bytes]]) -> Message:
    """The response start with ``headers`` added, except those the app already set."""
    own = message.get("headers", [])
    present = {name.lower() for name, _ in own}
    return {**message, "headers": [*own, *(h for h in headers if h[0] not in present)]}


class SecurityHeadersMiddleware:
    """Adds the security headers to every answer; on the docs pages, their own policy."""

    def __init__(self, app: ASGIApp, *, behind_https: bool, docs_paths: frozenset[str]) -> None:
        self.app = app
        self.docs_paths = docs_paths
        common = dict(SECURITY_HEADERS)
        if behind_https:
            common["Strict-Transport-Security"] = HSTS
        self.headers = [(k.lower().encode(), v.encode()) for k, v in common.items()]
        self.api_headers = [
            *self.headers,
            (b"content-security-policy", API_CONTENT_SECURITY_POLICY.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.docs_paths:
            await self._docs_page(scope, receive, send)
            return
        headers = self.api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Holds the (small) page back until its body is known, to hash its inline script."""
        start: Message | None = None
        body: list[bytes] = []

        async def send_with_policy(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = b"".join(body)
            policy = docs_content_security_policy(page)
            headers = [*self.headers, (b"content-security-policy", policy.encode())]
            await send(_with_headers(start, headers))
            start = None
            await send({"type": "http.response.body", "body": page, "more_body": False})

        await self.app(scope, receive, send_with_policy)


def install_security_headers(app: FastAPI, settings: CommonSettings) -> None:
    """Put the security headers on every answer of ``app``.

    The middleware wraps the app's whole stack, Starlette's ServerErrorMiddleware included
    (a middleware added the usual way runs inside it), so that the plain 500 of an unhandled
    exception carries the headers too.
    """
    docs_paths = frozenset(
        path for path in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if path
    )
    build_stack = app.build_middleware_stack

    def build_stack_with_headers() -> ASGIApp:
        return SecurityHeadersMiddleware(
            build_stack(), behind_https=settings.behind_https, docs_paths=docs_paths
        )

    app.build_middleware_stack = build_stack_with_headers  # type: ignore[method-assign]
