"""Jinja rendering from the package's templates, with autoescaping on everywhere.

The admin renders with its own environment rather than the host app's
template engine, so ``admin_router`` works in any Litestar app as it is.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Request, Response
from litestar.enums import MediaType

from conveyor.core.plan import decode_plan

from . import csrf

environment = Environment(
    loader=PackageLoader("conveyor.admin", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """ "3 s ago", "in 5 min": a moment relative to now, for tables."""
    if moment is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        return "now"
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"in {text}" if future else f"{text} ago"


def stamp(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def epoch_ago(epoch: float) -> str:
    return ago(datetime.fromtimestamp(epoch, UTC))


def waited(epoch: float | None) -> str:
    """ "12 s": how long since ``epoch`` (a queue's longest wait); "" for none."""
    if epoch is None:
        return ""
    text = epoch_ago(epoch)
    return "<1 s" if text == "now" else text.removesuffix(" ago")


def error_line(error: str | None) -> str:
    """The last line of a traceback: the exception and its message."""
    lines = [line for line in (error or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def short_id(job_id: str) -> str:
    """``01a2219c…8cc7``: ids are UUIDv7, so jobs made in the same minute share the
    first eight characters; the last four tell them apart."""
    return f"{job_id[:8]}…{job_id[-4:]}" if len(job_id) > 14 else job_id


def planned(plan: bytes | None) -> str:
    """What a producer declared for a job (``enqueue_family``), in words."""
    if not plan:
        return ""
    try:
        members = decode_plan(plan)
    except ValueError:
        return "unreadable"
    heirs = sum(1 for m in members if m.predecessor_id is not None)
    kids = len(members) - heirs
    return f"{kids} child{'ren' if kids != 1 else ''}, {heirs} heir{'s' if heirs != 1 else ''}"


environment.filters.update(
    ago=ago,
    planned=planned,
    stamp=stamp,
    duration=duration,
    epoch_ago=epoch_ago,
    waited=waited,
    error_line=error_line,
    short_id=short_id,
)
environment.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, sort_keys=False)


def page(
    request: Request,  # type: ignore[type-arg]
    template: str,
    *,
    base: str,
    status_code: int = 200,
    **context: Any,
) -> Response[str]:
    """Render a template as an HTML response, with what every page needs."""
    token = csrf.token(request)
    html = environment.get_template(template).render(
        base=base,
        csrf_token=token,
        csrf_field=csrf.FIELD,
        path=external_path(request),
        query=dict(request.query_params),
        htmx=request.headers.get("hx-request") == "true",
        **context,
    )
    response = Response(html, media_type=MediaType.HTML, status_code=status_code)
    return with_token_cookie(request, response, base)


def external_path(request: Request) -> str:  # type: ignore[type-arg]
    """The path the browser asked for, mount prefix included (routing strips it from ``path``)."""
    raw = request.scope.get("raw_path")
    if raw:
        return raw.decode("latin-1")
    return request.scope.get("root_path", "") + request.scope["path"]


def with_token_cookie(
    request: Request,  # type: ignore[type-arg]
    response: Response[Any],
    base: str,
) -> Response[Any]:
    """Set the CSRF cookie when this request created the token."""
    created = csrf.new_token(request)
    if created is not None:
        response.set_cookie(
            csrf.COOKIE,
            created,
            path=base or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response
