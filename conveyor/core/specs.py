"""Turning a message and its enqueue options into a ``JobSpec``.

Clients and running jobs share this, so ``enqueue``, ``enqueue_child`` and
``enqueue_heir`` accept the same options and validate them the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict, Unpack

from .config import Backoff, Config
from .errors import InvalidJobOptions
from .ids import new_id
from .job import Job, JobSpec, to_datetime
from .payloads import encode_payload
from .states import JobState, When

MAX_QUEUE_NAME = 255
#: Unique keys are at most this many bytes (UTF-8).
MAX_KEY = 256
# Far enough for any real schedule, near enough that every time stays a valid datetime.
MAX_DELAY_SECONDS = 100 * 365 * 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """Where a declared job sits: under a parent, or after a predecessor."""

    parent_id: str | None = None
    predecessor_id: str | None = None
    when: When | None = None
    optional: bool = False
    root_id: str | None = None
    """The top-level job of the family (the declarer's own root, or the declarer)."""


TOP_LEVEL = Family()


class EnqueueOptions(TypedDict, total=False):
    """Options shared by ``enqueue``, ``enqueue_many``, ``enqueue_child`` and ``enqueue_heir``.

    Attributes:
        queue: overrides the queue (default: the payload's type name).
        delay: run no sooner than this long after release (``timedelta`` or seconds).
        run_at: run no sooner than this timezone-aware datetime (within 100 years of now).
        max_attempts: attempts in total (default ``Config.max_attempts``).
        timeout: an attempt running longer counts as an error.
        priority: higher runs first within a queue (32-bit integer, default 0).
        headers: string metadata carried with the job (e.g. trace context).
        backoff: this job's wait between attempts (default: its handler's, else
            ``Config.backoff``).
        key: a unique key in the job's queue (1-256 bytes): while a job holding it
            has not settled, enqueue answers with that job instead of a new one. A
            declaration takes its key when it is released, and settles cancelled as a
            duplicate if the key is held then (``docs/rules.md`` rule 15).
        key_ttl: how long the key stays held after its job settles (default 0).
    """

    queue: str | None
    delay: timedelta | float | None
    run_at: datetime | None
    max_attempts: int | None
    timeout: timedelta | float | None
    priority: int
    headers: Mapping[str, str] | None
    backoff: Backoff | None
    key: str | None
    key_ttl: timedelta | float | None


def _seconds(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
    else:
        raise InvalidJobOptions(f"{name} must be a timedelta or seconds, got {value!r}")
    if not 0 <= seconds <= MAX_DELAY_SECONDS:  # also refuses NaN
        raise InvalidJobOptions(
            f"{name} must be a non-negative duration of at most {MAX_DELAY_SECONDS:.0f} "
            f"seconds, got {value!r}"
        )
    return seconds


def _key(key: object, ttl: object) -> tuple[str | None, float | None]:
    if key is None:
        if ttl is not None:
            raise InvalidJobOptions("key_ttl needs a key")
        return None, None
    if not isinstance(key, str) or not 1 <= len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY:
        raise InvalidJobOptions(f"key must be 1-{MAX_KEY} bytes of text, got {key!r:.80}")
    return key, _seconds(ttl, "key_ttl")


def validate_queue(queue: str) -> str:
    """Queue names are 1-255 printable characters."""
    if not isinstance(queue, str) or not queue or len(queue) > MAX_QUEUE_NAME:
        raise InvalidJobOptions(f"queue must be a string of 1-{MAX_QUEUE_NAME} characters")
    if not queue.isprintable():
        raise InvalidJobOptions(f"queue {queue!r} contains unprintable characters")
    return queue


def build_spec(
    config: Config,
    message: object,
    *,
    family: Family = TOP_LEVEL,
    **options: Unpack[EnqueueOptions],
) -> JobSpec:
    """Validate options and serialize the payload.

    Raises:
        PayloadTypeError, PayloadTooLarge: the message cannot be a payload.
        InvalidJobOptions: an option is out of range.
    """
    unknown = set(options) - set(EnqueueOptions.__annotations__)
    if unknown:
        raise InvalidJobOptions(f"unknown enqueue options: {', '.join(sorted(unknown))}")
    type_name, payload = encode_payload(message, limit=config.max_payload_bytes)
    queue = options.get("queue")
    delay = options.get("delay")
    run_at = options.get("run_at")
    max_attempts = options.get("max_attempts")
    timeout = options.get("timeout")
    priority = options.get("priority", 0)
    headers = options.get("headers")
    backoff = options.get("backoff")
    key, key_ttl = _key(options.get("key"), options.get("key_ttl"))
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidJobOptions(f"backoff must be a conveyor.Backoff, got {backoff!r}")
    if delay is not None and run_at is not None:
        raise InvalidJobOptions("give delay or run_at, not both")
    when: float | None = None
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidJobOptions(f"run_at must be a datetime, got {run_at!r}")
        if run_at.tzinfo is None:
            raise InvalidJobOptions("run_at must be timezone-aware (e.g. datetime.now(UTC))")
        when = run_at.timestamp()
        if not abs(when - time.time()) <= MAX_DELAY_SECONDS:  # every time stays a datetime
            raise InvalidJobOptions(
                f"run_at must be within {MAX_DELAY_SECONDS:.0f} seconds of now, got {run_at!r}"
            )
    wait = _seconds(delay, "delay")
    if wait:
        when = time.time() + wait
    attempts = config.max_attempts if max_attempts is None else max_attempts
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts < 2**31  # every backend stores it as a 32-bit integer
    ):
        raise InvalidJobOptions(
            f"max_attempts must be an integer from 1 to 2**31-1, got {attempts!r}"
        )
    limit = _seconds(timeout, "timeout")
    if limit == 0:
        raise InvalidJobOptions("timeout must be positive (or None for no timeout)")
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not -(2**31) <= priority < 2**31
    ):
        raise InvalidJobOptions("priority must be a 32-bit integer")
    if headers is not None and (
        not isinstance(headers, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise InvalidJobOptions("headers must map strings to strings")
    return JobSpec(
        id=new_id(),
        type=type_name,
        queue=validate_queue(type_name if queue is None else queue),
        payload=payload,
        run_at=when,
        max_attempts=attempts,
        timeout=limit,
        priority=priority,
        headers=dict(headers or {}),
        parent_id=family.parent_id,
        predecessor_id=family.predecessor_id,
        when=family.when,
        optional=family.optional,
        backoff=backoff,
        key=key,
        key_ttl=key_ttl,
        root_id=family.root_id,
    )


def job_of(spec: JobSpec, state: JobState) -> Job:
    """The ``Job`` a producer gets back at once, before storage is asked again."""
    return Job(
        id=spec.id,
        type=spec.type,
        queue=spec.queue,
        state=state,
        payload_bytes=spec.payload,
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        timeout=spec.timeout,
        parent_id=spec.parent_id,
        predecessor_id=spec.predecessor_id,
        when=spec.when,
        optional=spec.optional,
        backoff=spec.backoff,
        root_id=spec.root_id,
        key=spec.key,
        headers=dict(spec.headers),
        created_at=to_datetime(time.time()),
        run_at=to_datetime(spec.run_at),
    )


def initial_state(spec: JobSpec) -> JobState:
    """What a top-level job is right after enqueue."""
    if spec.run_at is not None and spec.run_at > time.time():
        return JobState.SCHEDULED
    return JobState.QUEUED
