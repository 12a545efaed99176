"""The admin app mounted under /ops/conveyor of a bare ASGI application.

    uvicorn examples.admin.in_plain_asgi:app --port 8000
    # then open http://127.0.0.1:8000/ops/conveyor/

Any ASGI router that sets ``root_path`` for a mounted app (Starlette's Mount,
FastAPI's ``app.mount``, or this one) works the same: the admin's links
follow the path it is mounted under.
"""

from __future__ import annotations

from typing import Any

import conveyor
from conveyor.admin import create_app

PREFIX = "/ops/conveyor"
admin = create_app(conveyor.Config())


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # let the admin open and close its storage
        await admin(scope, receive, send)  # type: ignore[arg-type]
        return
    path = scope.get("path", "")
    if path == PREFIX or path.startswith(PREFIX + "/"):
        scope = dict(scope, root_path=scope.get("root_path", "") + PREFIX)
        await admin(scope, receive, send)  # type: ignore[arg-type]
        return
    body = b"This service's own pages; the job admin is at " + PREFIX.encode() + b"/\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})
