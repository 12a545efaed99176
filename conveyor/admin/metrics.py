"""``GET /metrics``: the namespace's state read from storage, in Prometheus's text
format (``conveyor.core.metrics``). Workers count their own events on their own
``--metrics-port``; this endpoint never double-counts them."""

from __future__ import annotations

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from conveyor.core.errors import BackendError
from conveyor.core.metrics import (
    Fixed,
    NamespaceState,
    exposition,
    namespace_metrics,
    read_namespace,
)

from .state import AdminState


def metrics_handler(admin: AdminState) -> HTTPRouteHandler:
    """The handler, bound to one admin's storage."""

    @get("/metrics", include_in_schema=False, cache=False)
    async def metrics() -> Response[bytes]:
        try:
            storage = await admin.storage()
        except BackendError as exc:  # down or refused: a scrape still answers, up = 0
            state = NamespaceState(0.0, error=str(exc))
        else:
            state = await read_namespace(storage)
        body, content_type = exposition(Fixed(namespace_metrics(state)))
        # prometheus_client's type names the charset, which Litestar adds to text/*.
        return Response(body, media_type=content_type.replace("; charset=utf-8", ""))

    return metrics
