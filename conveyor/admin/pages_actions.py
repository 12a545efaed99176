"""The pages' actions: cancel, retry or discard one job, or many at once.

Each answers an htmx request with a fragment to swap in, and a plain form
post with a redirect, so the pages work without JavaScript too.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import FormMultiDict
from litestar.exceptions import NotFoundException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect

from conveyor.core.errors import InvalidState
from conveyor.core.job import Job
from conveyor.core.storage import JobFilter

from .actions import Action, BulkResult, apply, apply_each, apply_matching
from .pages_context import PageContext
from .views import job_filter

DONE = {
    "cancel": "Cancelled, with its open family below it",
    "retry": "Queued again with fresh attempts, its family re-opened",
    "retry-failed": "Every member whose handler failed is queued again",
}


def action_pages(ctx: PageContext) -> list[HTTPRouteHandler]:
    """The single-job and bulk action handlers, bound to one admin.

    Args:
        ctx: The admin whose jobs the actions change.

    Returns:
        The route handlers, for the pages' router.
    """

    @post("/jobs/{job_id:str}/{action:str}", status_code=200)
    async def act(
        request: Request,  # type: ignore[type-arg]
        job_id: FromPath[str],
        action: FromPath[str],
    ) -> Response[Any]:
        try:
            chosen = Action(action)
        except ValueError:
            raise NotFoundException(f"no action {action!r}") from None
        storage = await ctx.admin.storage()
        htmx = request.headers.get("hx-request") == "true"
        try:
            job = await apply(storage, chosen, job_id)
        except InvalidState as exc:
            current = await storage.get(job_id)
            if not htmx or current is None:
                raise
            return ctx.render(
                request,
                "job_summary.html",
                job=current,
                notice=("error", str(exc)),
                status_code=409,
            )
        return _acted(ctx, request, chosen, job_id, job, htmx=htmx)

    @post("/bulk", status_code=200)
    async def bulk(request: Request) -> Response[str]:  # type: ignore[type-arg]
        form = await request.form()
        try:
            chosen = Action(str(form.get("action", "")))
        except ValueError:
            raise ValidationException("choose cancel, retry, retry-failed or discard") from None
        storage = await ctx.admin.storage()
        result: BulkResult
        if form.get("scope") == "matching":
            if form.get("confirm") != "yes":
                raise ValidationException("acting on every matching job needs confirmation")
            result = await apply_matching(storage, chosen, _form_filter(form))
        else:
            ids = [str(v) for v in form.getall("ids", [])]
            if not ids:
                raise ValidationException("select at least one job")
            result = await apply_each(storage, chosen, ids)
        return ctx.render(request, "bulk_result.html", action=chosen, result=result)

    return [act, bulk]


def _acted(
    ctx: PageContext,
    request: Request,  # type: ignore[type-arg]
    chosen: Action,
    job_id: str,
    job: Job,
    *,
    htmx: bool,
) -> Response[Any]:
    """Where an action that went through leads: the job's summary, its page, or a list."""
    base = ctx.base(request)
    if chosen is Action.DISCARD:
        # The job is gone: back to the list it came from (``job`` is as it was).
        state = job.state.value
        listing = f"{base}/failed" if state == "failed" else f"{base}/jobs?state={state}"
        if htmx:
            return Response("", headers={"HX-Redirect": listing}, media_type="text/html")
        return Redirect(listing, status_code=303)
    if not htmx:
        return Redirect(f"{base}/jobs/{job_id}", status_code=303)
    notice = ("ok", f"{DONE[chosen.value]}; it is now {job.state.value}.")
    return ctx.render(request, "job_summary.html", job=job, notice=notice)


def _form_filter(form: FormMultiDict) -> JobFilter:
    """The list filter a bulk form carries, for acting on every job it matches."""
    try:
        return job_filter(
            state=str(form.get("state") or "") or None,
            queue=str(form.get("queue") or "") or None,
            type=str(form.get("type") or "") or None,
            id_prefix=str(form.get("id") or "") or None,
            retrying=form.get("retrying") == "true",
        )
    except ValueError:
        raise ValidationException("no such state") from None
