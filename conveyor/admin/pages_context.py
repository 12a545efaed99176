"""What every page handler shares: its admin's state, and where that admin is served."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response

from .render import page
from .state import AdminState


def admin_base(request: Request, prefix: str) -> str:  # type: ignore[type-arg]
    """The URL path the admin is served under, however it was mounted.

    Routing strips a mount's prefix from ``path`` but not from ``raw_path``,
    so the difference between the two is where the host put us; a router's
    own ``prefix`` is still in ``path``.

    Args:
        request: The request being served.
        prefix: The admin router's own path, ``""`` when it is served at the root.

    Returns:
        The path without a trailing slash, ``""`` for the root.
    """
    path = request.scope["path"].rstrip("/")
    raw = request.scope.get("raw_path")
    outer = raw.decode("latin-1").rstrip("/") if raw else ""
    if raw and outer.endswith(path):
        mount = outer[: len(outer) - len(path)]
    else:
        mount = request.scope.get("root_path", "")
    return (mount + prefix).rstrip("/")


@dataclass(frozen=True, slots=True)
class PageContext:
    """One admin's state and router prefix, which the page handlers are bound to.

    Every page module builds its handlers from one of these, so two admins in
    one process never share a handler (or a storage).

    Attributes:
        admin: The admin's storage, type registry and event hub.
        prefix: The admin router's own path, ``""`` when it is served at the root.
    """

    admin: AdminState
    prefix: str

    def base(self, request: Request) -> str:  # type: ignore[type-arg]
        """The URL path the admin is served under, for links and redirects.

        Args:
            request: The request being served.

        Returns:
            The path without a trailing slash, ``""`` for the root.
        """
        return admin_base(request, self.prefix)

    def render(self, request: Request, template: str, **context: Any) -> Response[str]:  # type: ignore[type-arg]
        """Render a template as an HTML page of this admin.

        Args:
            request: The request being served.
            template: The template's name in the package's templates.
            **context: The template's variables, and ``status_code`` if not 200.

        Returns:
            The HTML response, with the CSRF cookie when this request made the token.
        """
        return page(request, template, base=self.base(request), **context)
