"""Choosing a backend by URL scheme, importing it only when asked for.

``core`` never imports a backend statically: the table holds import strings.
Third parties add schemes through the ``conveyor.backends`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import cast

from .config import Config, mask_url
from .errors import UnsupportedURL
from .storage import Storage, StorageFactory

_SCHEMES: dict[str, str] = {
    "memory": "conveyor.backends.memory:MemoryStorage",
    "redis": "conveyor.backends.redis:RedisStorage",
    "rediss": "conveyor.backends.redis:RedisStorage",
    "redis+cluster": "conveyor.backends.redis:RedisStorage",
    "unix": "conveyor.backends.redis:RedisStorage",
    "postgresql": "conveyor.backends.sql:SQLStorage",
    "postgresql+psycopg": "conveyor.backends.sql:SQLStorage",
    "sqlite": "conveyor.backends.sql:SQLStorage",
    "sqlite+aiosqlite": "conveyor.backends.sql:SQLStorage",
}


def _from_entry_points(scheme: str) -> str | None:
    for entry in entry_points(group="conveyor.backends"):
        if entry.name == scheme:
            return entry.value
    return None


def known_schemes() -> list[str]:
    """Every scheme a URL may use."""
    extra = [entry.name for entry in entry_points(group="conveyor.backends")]
    return sorted({*_SCHEMES, *extra})


def backend_class(config: Config) -> StorageFactory:
    """The backend class serving ``config.url``.

    Raises:
        UnsupportedURL: no backend knows the scheme.
        MissingExtra: the backend's driver is not installed.
    """
    scheme = config.scheme
    target = _SCHEMES.get(scheme) or _from_entry_points(scheme)
    if target is None:
        raise UnsupportedURL(
            f"no backend for {mask_url(config.url)!r} (scheme {scheme!r}); "
            f"use one of: {', '.join(known_schemes())}"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("conveyor.backends."):
            raise UnsupportedURL(
                f"the {scheme!r} backend is not part of this version of Conveyor"
            ) from exc
        raise
    return cast("StorageFactory", getattr(module, attr))


async def open_storage(config: Config) -> Storage:
    """Open the backend that ``config.url`` names."""
    return await backend_class(config).open(config)


async def namespaces(config: Config) -> list[str]:
    """The namespaces holding Conveyor data at ``config.url``, sorted (for pointing out
    a namespace typo); empty when the backend cannot tell (``namespaces`` is an
    optional classmethod of a backend class)."""
    found = getattr(backend_class(config), "namespaces", None)
    return sorted(await found(config)) if found is not None else []
