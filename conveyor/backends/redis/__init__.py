"""The Redis backend (``redis://``, ``rediss://``, ``unix://``): one Lua script per transition."""

from .storage import RedisStorage

__all__ = ["RedisStorage"]
