"""Job hashes and script arguments: how ``Job`` and ``JobSpec`` look in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from conveyor.core.job import Job, JobSpec, to_datetime
from conveyor.core.states import JobState, When

# The Lua side reads a spec as this many consecutive arguments (lib.lua SPEC_FIELDS).
SPEC_FIELDS = 13
# A job's state is one letter in its hash (lib.lua CODE).
STATE_OF_CODE = {
    b"h": JobState.HELD,
    b"d": JobState.SCHEDULED,
    b"q": JobState.QUEUED,
    b"r": JobState.RUNNING,
    b"w": JobState.WAITING,
    b"s": JobState.SUCCEEDED,
    b"f": JobState.FAILED,
    b"c": JobState.CANCELLED,
}
ArgValue = str | bytes | int | float


def spec_args(spec: JobSpec) -> list[ArgValue]:
    """A spec as script arguments: absent values are ''."""
    return [
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


def _text(fields: dict[bytes, bytes], name: bytes) -> str | None:
    value = fields.get(name)
    return value.decode() if value is not None else None


def _number(fields: dict[bytes, bytes], name: bytes) -> float | None:
    value = fields.get(name)
    return float(value) if value is not None else None


def _headers(value: str | None) -> dict[str, str]:
    headers = json.loads(value) if value else {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError(f"headers are not a JSON object of strings: {value!r}")
    return headers


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(",")) if value else ()


def _payload(fields: dict[bytes, bytes]) -> bytes:
    """The payload, reassembled from its 64-byte pieces (see ``lib.lua``)."""
    first = fields.get(b"p", b"")
    if b"p1" not in fields:
        return first
    parts = [first]
    index = 1
    while (part := fields.get(b"p%d" % index)) is not None:
        parts.append(part)
        index += 1
    return b"".join(parts)


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A Redis flat field/value reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def job_from_hash(job_id: str, fields: dict[bytes, bytes]) -> Job:
    """Build a ``Job`` from its hash.

    Raises:
        KeyError, ValueError: the hash is not a Conveyor job (no type, or no known state).
    """
    type_name = fields[b"t"].decode()
    when = _text(fields, b"w")
    predecessor_state = _text(fields, b"ps")
    return Job(
        id=job_id,
        type=type_name,
        queue=_text(fields, b"q") or type_name,
        state=STATE_OF_CODE[fields[b"s"]],
        payload_bytes=_payload(fields),
        priority=int(fields.get(b"pr", b"0")),
        attempt=int(fields.get(b"a", b"0")),
        max_attempts=int(fields.get(b"m", b"5")),
        timeout=_number(fields, b"to"),
        parent_id=_text(fields, b"par"),
        predecessor_id=_text(fields, b"pred"),
        when=When(when) if when else None,
        optional=fields.get(b"o") == b"1",
        headers=_headers(_text(fields, b"h")),
        last_error=_text(fields, b"e"),
        created_at=to_datetime(created_at(job_id)),
        run_at=to_datetime(_number(fields, b"ra")),
        started_at=to_datetime(_number(fields, b"st")),
        finished_at=to_datetime(_number(fields, b"fin")),
        lease_token=int(fields.get(b"tok", b"0")),
        worker_id=_text(fields, b"wid"),
        lost_count=int(fields.get(b"lost", b"0")),
        open_children=int(fields.get(b"open", b"0")),
        failed_ids=_ids(_text(fields, b"fids")),
        reason=_text(fields, b"why"),
        failed_child_id=_text(fields, b"fc"),
        predecessor_state=JobState(predecessor_state) if predecessor_state else None,
        predecessor_failed_ids=_ids(_text(fields, b"pf")),
    )
