"""The admin inside your own Litestar service, at /admin, beside your routes.

    uvicorn examples.admin.in_litestar_host:app --port 8000
    # then open http://127.0.0.1:8000/admin/ (user "ops", password "change-me")

CONVEYOR_URL chooses the store (default redis://localhost:6379/0).
"""

from __future__ import annotations

import os

from litestar import Litestar, get

import conveyor
from conveyor.admin import BasicAuth, admin_router

config = conveyor.Config()
admin = admin_router(
    config,
    path="/admin",
    auth=BasicAuth("ops", os.environ.get("ADMIN_PASSWORD", "change-me")),
)


@get("/")
async def home() -> dict[str, str]:
    """The host's own route."""
    return {"service": "shop", "admin": "/admin/"}


# The admin opens its storage on first use; closing it on shutdown is polite.
app = Litestar([home, admin], on_shutdown=[admin.opt["conveyor_admin"].aclose])
