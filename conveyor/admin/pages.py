"""The HTML pages: server-rendered, with htmx for actions and live refresh.

The handlers live in one module per concern (``pages_overview``,
``pages_lists``, ``pages_jobs``, ``pages_actions``, ``pages_events``), each
bound to its admin through a ``PageContext``; this module gathers them.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from .pages_actions import action_pages
from .pages_context import PageContext
from .pages_events import event_pages, static_files
from .pages_jobs import job_pages
from .pages_lists import list_pages
from .pages_overview import overview_pages
from .state import AdminState


def pages_router(admin: AdminState, prefix: str) -> list[ControllerRouterHandler]:
    """The page handlers, bound to one admin.

    Args:
        admin: The admin's state, which every page reads (and acts) through.
        prefix: The admin router's own path, ``""`` when it is served at the root.

    Returns:
        The route handlers and the static files' router, for the pages' router.
    """
    ctx = PageContext(admin, prefix)
    return [
        *overview_pages(ctx),
        *list_pages(ctx),
        *job_pages(ctx),
        *action_pages(ctx),
        *event_pages(ctx),
        static_files(),
    ]
