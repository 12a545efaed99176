"""The in-memory backend (``memory://name``): every rule, no server."""

from .storage import MemoryStorage, drop_store

__all__ = ["MemoryStorage", "drop_store"]
