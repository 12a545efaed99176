"""The admin: a Litestar app (or a Router for a host's own app) to watch and steer jobs.

``create_app(config)`` serves it standalone or mounted under any path of a host
ASGI app; ``admin_router(config, path="/admin")`` adds it to a host's Litestar
app. It reads and changes jobs only through the Storage protocol, so it works
on every backend, and imports no user code: payloads are decoded from the
descriptor sets that workers publish (or from ``types=``).
"""

from __future__ import annotations

from .app import admin_router, create_app
from .auth import BasicAuth

__all__ = ["BasicAuth", "admin_router", "create_app"]
