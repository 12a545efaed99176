"""The one place where redis-py errors and script error replies become Conveyor errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import exceptions as redis_errors

from conveyor.core.config import mask_url
from conveyor.core.errors import (
    BackendError,
    BackendUnavailable,
    ConveyorError,
    InvalidState,
    JobNotFound,
    LeaseLost,
)

from .layout import ERROR

#: What redis-py raises while a cluster's slot map changes under it. RedisClusterException
#: (no slot owner, no node reachable) is not one of its RedisErrors.
_CLUSTER_IN_FLUX = (
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.RedisClusterException,
)


def from_reply(message: str) -> ConveyorError | None:
    """The typed error a script's error reply stands for (``layout.ERROR``), if any."""
    code, _, rest = message.partition(" ")
    if code == ERROR["not_found"]:
        return JobNotFound(rest)
    if code == ERROR["lease_lost"]:
        return LeaseLost(rest)
    if code == ERROR["state"]:
        job_id, verb, current, why = rest.split(" ", 3)
        return InvalidState(job_id, current, verb, why)
    return None


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Run Redis calls; their errors leave as Conveyor errors (the cause kept)."""
    try:
        yield
    except _CLUSTER_IN_FLUX as exc:
        # A cluster between a master's failure and its replica's promotion (or a slot
        # migrating): the command did not run, and will once the slot is served again.
        raise BackendUnavailable(f"Redis Cluster at {mask_url(url)} is unavailable: {exc}") from exc
    except redis_errors.ResponseError as exc:
        message = str(exc)
        typed = from_reply(message)
        if typed is not None:
            raise typed from None
        raise BackendError(f"Redis at {mask_url(url)} refused a command: {message}") from exc
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        raise BackendUnavailable(f"Redis at {mask_url(url)} is unreachable: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise BackendError(f"Redis at {mask_url(url)} failed: {exc}") from exc
