"""The SQL backend: PostgreSQL (``postgresql://``, ``postgresql+psycopg://``) and SQLite (``sqlite:///path``)."""

from .storage import SQLStorage

__all__ = ["SQLStorage"]
