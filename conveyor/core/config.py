"""Configuration: where storage lives and how jobs are retried and kept."""

from __future__ import annotations

import math
import os
import random
import re
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigurationError

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_NAMESPACE = "conveyor"
_NAMESPACE = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# scheme, then optional slashes and a user name, then ":password@" up to the last "@".
_USERINFO_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:/*[^:/@]*:).*@", re.DOTALL)


def _default_url() -> str:
    return os.environ.get("CONVEYOR_URL") or DEFAULT_URL


def _default_namespace() -> str:
    return os.environ.get("CONVEYOR_NAMESPACE") or DEFAULT_NAMESPACE


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and errors.

    Anything between a ``:`` and the last ``@`` is treated as a password even
    when the URL does not parse, and a string that is not a URL at all keeps only
    what follows its last ``@``, so a malformed URL never leaks one.
    """
    try:
        parts = urlsplit(url)
        # An "@" after the host part too: the password may hold "@" and one of "/?#".
        if parts.password is not None and "@" not in parts.path + parts.query + parts.fragment:
            user = parts.username or ""
            netloc = f"{user}:***@{parts.netloc.rpartition('@')[2]}"
            return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        pass
    if not _SCHEME.match(url) and "@" in url:
        # Not a URL (e.g. "user:password@host" without a scheme): where its user
        # name ends is anyone's guess, so keep only what follows the last "@".
        return "***@" + url.rpartition("@")[2]
    return _USERINFO_PASSWORD.sub(r"\1***@", url)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off between attempts, in seconds.

    The n-th retry waits ``min(cap, base * factor ** (n - 1))``; with ``jitter``
    the wait is drawn uniformly from half of that to all of it, so that jobs
    that failed together do not retry together.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        values = (self.base, self.factor, self.cap)
        if not all(math.isfinite(v) for v in values):
            raise ConfigurationError("Backoff values must be finite numbers")
        if self.base < 0 or self.factor < 1 or self.cap < 0:
            raise ConfigurationError("Backoff needs base >= 0, factor >= 1 and cap >= 0")

    def to_text(self) -> str:
        """How backends store a job's own back-off: ``base,factor,cap,jitter``."""
        return f"{self.base!r},{self.factor!r},{self.cap!r},{int(self.jitter)}"

    @classmethod
    def from_text(cls, text: str) -> Backoff:
        """Read ``to_text``'s form back.

        Raises:
            ConfigurationError: it is not that form (a ``ValueError``).
        """
        parts = text.split(",")
        if len(parts) != 4 or parts[3] not in ("0", "1"):
            raise ConfigurationError(f"stored back-off {text!r} is not base,factor,cap,jitter")
        try:
            base, factor, cap = (float(p) for p in parts[:3])
        except ValueError:
            raise ConfigurationError(f"stored back-off {text!r} holds a non-number") from None
        return cls(base, factor, cap, parts[3] == "1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (counting from 1)."""
        if self.base == 0:
            return 0.0
        exponent = max(attempt - 1, 0)
        try:
            raw = self.base * float(self.factor) ** exponent
        except OverflowError:
            raw = math.inf
        wait = min(self.cap, raw)
        if self.jitter:
            wait = random.uniform(wait / 2, wait)
        return wait


@dataclass(frozen=True, slots=True)
class Config:
    """Where jobs are stored and the defaults that govern them.

    Args:
        url: storage URL; its scheme picks the backend (``redis://``,
            ``postgresql+psycopg://``, ``sqlite:///path``, ``memory://``).
            Defaults to ``$CONVEYOR_URL``, else ``redis://localhost:6379/0``.
        namespace: isolates installations on one server (key prefix, schema
            or table prefix): lower-case letters, digits and ``_``. Defaults to
            ``$CONVEYOR_NAMESPACE``, else ``conveyor``.
        backoff: wait between attempts.
        max_attempts: attempts per job unless a job says otherwise.
        max_payload_bytes: larger payloads are refused at enqueue.
        retention: how long settled jobs are kept before pruning.
        failed_retention: how long jobs that failed are kept (longer, so they can be
            looked at and retried).
        max_lost: expired leases a job survives before it fails as "worker lost".
        migrate: create or upgrade the schema on connect.
    """

    url: str = field(default_factory=_default_url)
    namespace: str = field(default_factory=_default_namespace)
    backoff: Backoff = field(default_factory=Backoff)
    max_attempts: int = 5
    max_payload_bytes: int = 1 << 20
    retention: timedelta = timedelta(hours=24)
    failed_retention: timedelta = timedelta(days=7)
    max_lost: int = 3
    migrate: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not _NAMESPACE.fullmatch(self.namespace):
            raise ConfigurationError(
                f"namespace {self.namespace!r} must be 1-40 lower-case letters, digits or '_', "
                "starting with a letter or '_'"
            )
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.max_payload_bytes < 1:
            raise ConfigurationError("max_payload_bytes must be positive")
        if self.max_lost < 0:
            raise ConfigurationError("max_lost must be 0 or more")
        if self.retention < timedelta(0) or self.failed_retention < timedelta(0):
            raise ConfigurationError("retention and failed_retention must not be negative")
        if "://" not in self.url:
            raise ConfigurationError(
                f"{mask_url(self.url)!r} is not a URL; expected e.g. redis://localhost:6379/0, "
                "postgresql+psycopg://user@host/db, sqlite:///path.db or memory://"
            )

    @property
    def scheme(self) -> str:
        """The URL's scheme, lower-cased."""
        return self.url.split("://", 1)[0].lower()

    def __repr__(self) -> str:
        return f"Config(url={mask_url(self.url)!r}, namespace={self.namespace!r})"
