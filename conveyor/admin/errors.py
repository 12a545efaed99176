"""Every failure answers with a status and a one-line message: 4xx for what the
request got wrong, 503 when storage is unreachable, and never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from conveyor.core.errors import (
    BackendUnavailable,
    ConveyorError,
    InvalidJobOptions,
    InvalidLimits,
    InvalidState,
    JobNotFound,
    PayloadError,
    UnknownQueue,
    UnknownType,
)

from . import csrf
from .render import page

log = logging.getLogger("conveyor.admin")


def status_of(exc: Exception) -> tuple[int, str]:
    """The HTTP status and message for an exception raised while serving."""
    match exc:
        case HTTPException():
            return exc.status_code, str(exc.detail)
        case JobNotFound() | UnknownQueue():
            return 404, str(exc)
        case InvalidState():
            return 409, str(exc)
        case UnknownType() | PayloadError() | InvalidJobOptions() | InvalidLimits():
            return 422, str(exc)
        case BackendUnavailable():
            return 503, f"storage is unreachable: {exc}"
        case ConveyorError():
            return 502, f"storage failed: {exc}"
    log.error("admin request failed", exc_info=exc)
    return 500, "internal error; the server's log has the details"


def handler(base_of: Any) -> Any:
    """An exception handler for the admin's router; ``base_of(request)`` is its base path."""

    def handle(request: Request, exc: Exception) -> Response[Any]:  # type: ignore[type-arg]
        status, message = status_of(exc)
        headers = dict(getattr(exc, "headers", None) or {})
        wants_json = csrf.is_api(request) or "/api/" in request.url.path
        if wants_json:
            body: dict[str, Any] = {"status_code": status, "detail": message}
            if isinstance(exc, ValidationException) and exc.extra:
                body["extra"] = exc.extra
            return Response(body, status_code=status, headers=headers)
        if request.headers.get("hx-request") == "true":
            # htmx swaps only 2xx answers: show the message where the action was.
            headers |= {"HX-Retarget": "#notice", "HX-Reswap": "innerHTML"}
            base = base_of(request)
            html = page(request, "notice.html", base=base, kind="error", message=message)
            html.status_code = status
            html.headers.update(headers)
            return html
        response = page(
            request, "error.html", base=base_of(request), status=status, message=message
        )
        response.status_code = status
        response.headers.update(headers)
        return response

    return handle
