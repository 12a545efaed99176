"""CSRF protection for every state-changing request (double-submit token).

A page carries the token from an HttpOnly cookie in a header that htmx sends
(``X-CSRF-Token``) and in a hidden ``_csrf`` field of its forms; a POST must
present the cookie's value in one of them. Another site can make the browser
send the cookie, but cannot read it to put it in the request.

JSON API clients (scripts in any language) have no cookie: a POST under
``/api`` is accepted instead when its body is ``application/json``, which a
cross-site page cannot send without a CORS preflight that this app never
grants.
"""

from __future__ import annotations

import hmac
import secrets

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

COOKIE = "conveyor_csrf"
HEADER = "x-csrf-token"
FIELD = "_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token(request: Request) -> str:  # type: ignore[type-arg]
    """The request's token: its cookie's, or a new one that the response will set."""
    existing = request.cookies.get(COOKIE, "")
    if len(existing) == 43 and existing.replace("-", "").replace("_", "").isalnum():
        return existing
    new: str = request.scope.setdefault("state", {}).setdefault(
        "conveyor_csrf_new", secrets.token_urlsafe(32)
    )
    return new


def new_token(connection: ASGIConnection) -> str | None:  # type: ignore[type-arg]
    """The token this request created, if it created one (the response sets the cookie)."""
    state = connection.scope.get("state", {})
    value = state.get("conveyor_csrf_new")
    return value if isinstance(value, str) else None


async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Refuse (403) a state-changing request without the page's token."""
    if connection.scope.get("method", "GET") in SAFE_METHODS:
        return
    if is_api(connection) and _is_json(connection.headers.get("content-type", "")):
        return
    expected = connection.cookies.get(COOKIE, "")
    presented = connection.headers.get(HEADER, "")
    if not presented and isinstance(connection, Request):
        form = await connection.form()
        value = form.get(FIELD, "")
        presented = value if isinstance(value, str) else ""
    if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        raise PermissionDeniedException(
            "this form has expired or did not come from this admin; reload the page and try again"
        )


def is_api(connection: ASGIConnection) -> bool:  # type: ignore[type-arg]
    handler = connection.scope.get("route_handler")
    return bool(handler is not None and handler.opt.get("conveyor_api"))


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
