"""What the pages load besides HTML: the live-refresh event stream and the static files."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from importlib import resources

from litestar import Request, Router, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from .events import EventHub
from .pages_context import PageContext

HEARTBEAT = 15.0  # seconds between SSE comments that keep proxies from closing the stream


def event_pages(ctx: PageContext) -> list[HTTPRouteHandler]:
    """The server-sent events that tell open pages to refresh, bound to one admin.

    Args:
        ctx: The admin whose job changes the stream reports.

    Returns:
        The route handlers, for the pages' router.
    """

    @get("/events")
    async def events(request: Request) -> ServerSentEvent:  # type: ignore[type-arg]
        """A ``tick`` whenever jobs changed (at most one a second), with their ids."""
        return ServerSentEvent(_ticks(ctx.admin.hub))

    return [events]


async def _ticks(hub: EventHub) -> AsyncIterator[ServerSentEventMessage]:
    """The hub's ticks as SSE messages, with a comment in every quiet ``HEARTBEAT``."""
    ticks = hub.subscribe()
    next_tick = asyncio.ensure_future(anext(ticks))
    try:
        while True:
            done, _ = await asyncio.wait({next_tick}, timeout=HEARTBEAT)
            if not done:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            tick = next_tick.result()
            yield ServerSentEventMessage(data=json.dumps(tick.to_dict()), event="tick")
            next_tick = asyncio.ensure_future(anext(ticks))
    finally:
        next_tick.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await next_tick  # the generator must be idle before it can close
        await ticks.aclose()


def static_files() -> Router:
    """The stylesheet and scripts the pages load, from the package's ``static`` folder.

    Returns:
        A router for ``/static``, left out of the OpenAPI schema.
    """
    return create_static_files_router(
        "/static",
        directories=[str(resources.files("conveyor.admin").joinpath("static"))],
        cache_control=None,
        include_in_schema=False,
        name="conveyor-static",
    )
