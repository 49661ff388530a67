"""Request ids (passed on from service to service), structured logs and metrics."""

from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("request_id", default="")


def current_request_id() -> str:
    """The id of the request being served, or "" outside a request."""
    return _request_id.get()
