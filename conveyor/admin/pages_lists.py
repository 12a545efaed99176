"""The job lists: every job, one queue's, the presets (scheduled, retrying, failed),
each filtered and paged, and the search box that leads to a job or a list."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect

from .pages_context import PageContext
from .render import external_path
from .views import ORDER, job_filter

PAGE_SIZE = 50

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # path: (title, filter)
    "scheduled": ("Scheduled", {"state": "scheduled"}),
    "retrying": ("Retrying", {"state": "scheduled", "retrying": True}),
    "failed": ("Failed", {"state": "failed"}),
}


def list_pages(ctx: PageContext) -> list[HTTPRouteHandler]:
    """The job lists and the search box, bound to one admin.

    Args:
        ctx: The admin whose jobs the lists show.

    Returns:
        The route handlers, for the pages' router.
    """

    @get("/jobs")
    async def jobs(request: Request) -> Response[str]:  # type: ignore[type-arg]
        return await job_list(ctx, request, "Jobs", "jobs", {})

    @get("/queues/{queue:str}")
    async def queue_jobs(request: Request, queue: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        return await job_list(ctx, request, f"Queue {queue}", "queues", {"queue": queue})

    @get(["/scheduled", "/retrying", "/failed"])
    async def preset(request: Request) -> Response[str]:  # type: ignore[type-arg]
        name = request.scope["path"].rstrip("/").rsplit("/", 1)[-1]
        title, fixed = PRESETS[name]
        return await job_list(ctx, request, title, name, fixed)

    @get("/search")
    async def search(request: Request) -> Response[Any]:  # type: ignore[type-arg]
        wanted = (request.query_params.get("q") or "").strip()
        base = ctx.base(request)
        if not wanted:
            return Redirect(f"{base}/jobs")
        storage = await ctx.admin.storage()
        if await storage.get(wanted) is not None:
            return Redirect(f"{base}/jobs/{wanted}")
        found = await storage.list_jobs(job_filter(id_prefix=wanted), limit=2)
        if len(found.jobs) == 1:
            return Redirect(f"{base}/jobs/{found.jobs[0].id}")
        return Redirect(f"{base}/jobs?id={wanted}")

    return [jobs, queue_jobs, preset, search]


async def job_list(
    ctx: PageContext,
    request: Request,  # type: ignore[type-arg]
    title: str,
    nav: str,
    fixed: dict[str, Any],
) -> Response[str]:
    """One page of jobs, filtered by the query string and by what the list itself fixes.

    Args:
        ctx: The admin whose jobs to list.
        request: The request, whose query holds the filter and the ``after`` cursor.
        title: The page's heading.
        nav: The navigation entry to highlight.
        fixed: The filter fields the list sets itself, over the query's.

    Returns:
        The rendered list, with links to its first and next pages.

    Raises:
        ValidationException: The filter names no known state.
    """
    q = request.query_params
    chosen: dict[str, Any] = {
        "state": q.get("state") or None,
        "queue": q.get("queue") or None,
        "type": q.get("type") or None,
        "id_prefix": q.get("id") or None,
        "retrying": False,
    } | fixed
    try:
        selection = job_filter(
            chosen["state"],
            chosen["queue"],
            chosen["type"],
            chosen["id_prefix"],
            bool(chosen["retrying"]),
        )
    except ValueError:
        raise ValidationException(f"no state named {chosen['state']!r}") from None
    storage = await ctx.admin.storage()
    page_ = await storage.list_jobs(selection, after=q.get("after") or None, limit=PAGE_SIZE)
    return ctx.render(
        request,
        "jobs.html",
        **_links(external_path(request), dict(q), page_.next_cursor),
        nav=nav,
        title=title,
        jobs=page_.jobs,
        chosen=chosen,
        fixed=fixed,
        states=ORDER,
        notice=None,
    )


def _links(path: str, here: dict[str, str], next_cursor: str | None) -> dict[str, str | None]:
    """A list page's own URL, and those of its first and next pages (``None`` if none)."""
    without_cursor = {k: v for k, v in here.items() if k != "after"}
    return {
        "here": f"{path}?{urlencode(here)}" if here else path,
        "first_url": f"{path}?{urlencode(without_cursor)}" if "after" in here else None,
        "next_url": (
            f"{path}?{urlencode(without_cursor | {'after': next_cursor})}" if next_cursor else None
        ),
    }
