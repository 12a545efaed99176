"""The two ways to serve the admin: an app of its own, or a Router in a host app."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.message import Message
from litestar import Litestar, Request, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.types import Guard

from conveyor.core.config import Config

from . import csrf
from .api import api_router
from .auth import BasicAuth
from .errors import handler
from .metrics import metrics_handler
from .pages import pages_router
from .pages_context import admin_base
from .state import AdminState


def admin_router(
    config: Config,
    *,
    path: str = "/admin",
    auth: BasicAuth | None = None,
    types: Iterable[type[Message]] = (),
    guards: Sequence[Guard] = (),
    state: AdminState | None = None,
) -> Router:
    """The admin as a Router to add to a host Litestar app at ``path``.

    ``guards`` are the host's own (run after basic auth, if any); every
    POST is checked for CSRF. The storage opens on the first request; call
    ``router.opt["conveyor_admin"].aclose()`` on shutdown to close it early.
    """
    admin = state or AdminState(config, types)
    prefix = "" if path.strip("/") == "" else "/" + path.strip("/")
    pages = Router("/", route_handlers=pages_router(admin, prefix), include_in_schema=False)

    def base_of(request: Request) -> str:  # type: ignore[type-arg]
        return admin_base(request, prefix)

    checks: list[Guard] = [auth.guard] if auth is not None else []
    checks += [*guards, csrf.guard]
    return Router(
        prefix or "/",
        route_handlers=[pages, api_router(admin), metrics_handler(admin)],
        guards=checks,
        exception_handlers={Exception: handler(base_of)},
        opt={"conveyor_admin": admin},
    )


def create_app(
    config: Config,
    *,
    auth: BasicAuth | None = None,
    types: Iterable[type[Message]] = (),
    guards: Sequence[Guard] = (),
    debug: bool = False,
) -> Litestar:
    """The admin as a standalone Litestar app; mount it under any path of a host ASGI app.

    The OpenAPI document of its JSON API is at ``/api/schema/openapi.json``. It closes
    its storage on shutdown; a host that mounts it without passing lifespan events on
    (FastAPI's ``mount``) calls ``app.state.conveyor_admin.aclose()`` in its own.
    """
    admin = AdminState(config, types)
    router = admin_router(config, path="/", auth=auth, guards=guards, state=admin)
    app_guards: list[Any] = [auth.guard] if auth is not None else []  # the schema routes too

    def base_of(request: Request) -> str:  # type: ignore[type-arg]
        return admin_base(request, "")

    return Litestar(
        route_handlers=[router],
        guards=app_guards,
        exception_handlers={Exception: handler(base_of)},  # unknown paths, too
        on_shutdown=[admin.aclose],
        state=State({"conveyor_admin": admin}),
        openapi_config=OpenAPIConfig(
            title="Conveyor admin API",
            version="1",
            path="/api/schema",
            render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        ),
        debug=debug,
        logging_config=None,  # a library app leaves the host's logging alone
    )
