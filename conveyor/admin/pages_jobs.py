"""One job's page: its fields, its decoded payload and its family tree."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from .pages_context import PageContext
from .views import decode, existing, family


def job_pages(ctx: PageContext) -> list[HTTPRouteHandler]:
    """The job page and its family-tree fragment, bound to one admin.

    Args:
        ctx: The admin whose jobs the pages show.

    Returns:
        The route handlers, for the pages' router.
    """
    admin = ctx.admin

    @get("/jobs/{job_id:str}")
    async def job_page(request: Request, job_id: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        storage = await admin.storage()
        job = await existing(storage, job_id)
        payload, payload_error = decode(await admin.registry(), job)
        return ctx.render(
            request,
            "job.html",
            nav="jobs",
            job=job,
            payload=payload,
            payload_error=payload_error,
            family=await family(storage, job),
            notice=None,
        )

    @get("/jobs/{job_id:str}/children")
    async def children(request: Request, job_id: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        """One more level of a family tree (htmx fragment)."""
        storage = await admin.storage()
        job = await existing(storage, job_id)
        depth = int(request.query_params.get("depth", "1") or 1)
        return ctx.render(
            request, "family_rows.html", family=await family(storage, job), depth=depth
        )

    return [job_page, children]
