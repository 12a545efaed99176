"""Job hashes and script arguments: how ``Job`` and ``JobSpec`` look in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from conveyor.core.job import Job, JobSpec, to_datetime
from conveyor.core.states import JobState, When

from .layout import DEFAULT_MAX_ATTEMPTS, FIELD, SPEC_ARGS, STATE_CODE

STATE_OF_CODE = {code.encode(): state for state, code in STATE_CODE.items()}
ArgValue = str | bytes | int | float

# Hash field names as the bytes replies carry them.
_F = {name: field.encode() for name, field in FIELD.items()}


def spec_args(spec: JobSpec) -> list[ArgValue]:
    """A spec as script arguments (``layout.SPEC_ARGS``): absent values are ''."""
    args: list[ArgValue] = [
        spec.id,
        spec.type,
        spec.queue,
        spec.payload,
        repr(spec.run_at) if spec.run_at is not None else "",
        spec.max_attempts,
        repr(spec.timeout) if spec.timeout is not None else "",
        spec.priority,
        json.dumps(dict(spec.headers), separators=(",", ":")) if spec.headers else "",
        spec.parent_id or "",
        spec.predecessor_id or "",
        spec.when.value if spec.when else "",
        "1" if spec.optional else "",
    ]
    assert len(args) == len(SPEC_ARGS)
    return args


def specs_args(specs: Iterable[JobSpec]) -> list[ArgValue]:
    out: list[ArgValue] = []
    for spec in specs:
        out.extend(spec_args(spec))
    return out


def created_at(job_id: str) -> float | None:
    """A UUIDv7 carries its creation time in milliseconds: no need to store it."""
    try:
        return int(job_id.replace("-", "")[:12], 16) / 1000
    except ValueError:
        return None


def _headers(value: str | None) -> dict[str, str]:
    headers = json.loads(value) if value else {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError(f"headers are not a JSON object of strings: {value!r}")
    return headers


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(",")) if value else ()


def _chunked(fields: dict[bytes, bytes], field: str) -> bytes | None:
    """A payload or result, reassembled from its 64-byte pieces (see ``transitions.lua``)."""
    name = _F[field]
    first = fields.get(name)
    if first is None or name + b"1" not in fields:
        return first
    parts = [first]
    index = 1
    while (part := fields.get(name + b"%d" % index)) is not None:
        parts.append(part)
        index += 1
    return b"".join(parts)


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A Redis flat field/value reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def job_from_hash(job_id: str, fields: dict[bytes, bytes]) -> Job:
    """Build a ``Job`` from its hash (``layout.FIELD``).

    Raises:
        KeyError, ValueError: the hash is not a Conveyor job (no type, or no known state).
    """

    def text(name: str) -> str | None:
        value = fields.get(_F[name])
        return value.decode() if value is not None else None

    def number(name: str) -> float | None:
        value = fields.get(_F[name])
        return float(value) if value is not None else None

    def integer(name: str, default: int = 0) -> int:
        value = fields.get(_F[name])
        return int(value) if value is not None else default

    type_name = fields[_F["type"]].decode()
    when = text("when")
    predecessor_state = text("predecessor_state")
    return Job(
        id=job_id,
        type=type_name,
        queue=text("queue") or type_name,
        state=STATE_OF_CODE[fields[_F["state"]]],
        payload_bytes=_chunked(fields, "payload") or b"",
        priority=integer("priority"),
        attempt=integer("attempt"),
        max_attempts=integer("max_attempts", DEFAULT_MAX_ATTEMPTS),
        timeout=number("timeout"),
        parent_id=text("parent"),
        predecessor_id=text("predecessor"),
        when=When(when) if when else None,
        optional=fields.get(_F["optional"]) == b"1",
        headers=_headers(text("headers")),
        last_error=text("error"),
        created_at=to_datetime(created_at(job_id)),
        run_at=to_datetime(number("run_at")),
        started_at=to_datetime(number("started")),
        finished_at=to_datetime(number("finished")),
        worker_id=text("worker"),
        lost_count=integer("lost"),
        open_children=integer("open"),
        failed_ids=_ids(text("failed_ids")),
        reason=text("reason"),
        failed_child_id=text("failing_child"),
        predecessor_state=JobState(predecessor_state) if predecessor_state else None,
        predecessor_failed_ids=_ids(text("predecessor_failed_ids")),
        result_bytes=_chunked(fields, "result"),
        result_type=text("result_type"),
    )
