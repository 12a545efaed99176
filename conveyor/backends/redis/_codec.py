"""Job hashes and script arguments: how ``Job`` and ``JobSpec`` look in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from conveyor.core.config import Backoff
from conveyor.core.job import Job, JobSpec, job_of_values, to_datetime
from conveyor.core.progress import Progress
from conveyor.core.queues import QueueControls, QueueLimits, Rate
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
        spec.backoff.to_text() if spec.backoff else "",
        spec.key if spec.key is not None else "",
        repr(spec.key_ttl) if spec.key_ttl else "",
        spec.plan or "",
        spec.root_id or "",
    ]
    assert len(args) == len(SPEC_ARGS)
    return args


def specs_args(specs: Iterable[JobSpec]) -> list[ArgValue]:
    out: list[ArgValue] = []
    for spec in specs:
        out.extend(spec_args(spec))
    return out


def controls_from_field(queue: str, value: bytes) -> QueueControls:
    """A queue's controls from its ``ctl`` field (``layout.CONTROLS_FIELDS``).

    Raises:
        ValueError: the field is not in that form.
    """
    paused, max_running, rate, per = value.decode().split("|")
    limit = Rate(int(rate), float(per)) if rate else None
    return QueueControls(queue, paused == "1", QueueLimits(int(max_running or 0) or None, limit))


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


def _text(fields: dict[bytes, bytes], key: bytes) -> str | None:
    value = fields.get(key)
    return value.decode() if value is not None else None


def _number(fields: dict[bytes, bytes], key: bytes) -> float | None:
    value = fields.get(key)
    return float(value) if value is not None else None


# The keys job_from_hash reads, unpacked into locals there: decoding claimed jobs is
# a worker's hottest Python, and locals cost less than lookups by name.
_KEYS = tuple(_F[name] for name in (
    "type", "queue", "state", "priority", "attempt", "max_attempts", "timeout", "parent",
    "predecessor", "when", "optional", "headers", "error", "run_at", "started", "finished",
    "worker", "lost", "open", "failed_ids", "reason", "failing_child", "predecessor_state",
    "predecessor_failed_ids", "result_type", "backoff", "key", "progress", "plan", "root",
))  # fmt: skip


def job_from_hash(job_id: str, fields: dict[bytes, bytes]) -> Job:
    """Build a ``Job`` from its hash (``layout.FIELD``).

    Raises:
        KeyError, ValueError: the hash is not a Conveyor job (no type, or no known state).
    """
    (t, q, s, pr, a, m, to, par, pred, w, o, h, e, ra, st, fin,
     wid, lost, open_, fids, why, fc, ps, pf, rt, bo, k, prog, plan, root) = _KEYS  # fmt: skip
    type_name = fields[t].decode()
    when = _text(fields, w)
    predecessor_state = _text(fields, ps)
    return job_of_values(  # every field of Job, in its declaration order
        job_id,  # id
        type_name,  # type
        _text(fields, q) or type_name,  # queue
        STATE_OF_CODE[fields[s]],  # state
        _chunked(fields, "payload") or b"",  # payload_bytes
        int(fields.get(pr, b"0")),  # priority
        int(fields.get(a, b"0")),  # attempt
        int(fields[m]) if m in fields else DEFAULT_MAX_ATTEMPTS,  # max_attempts
        _number(fields, to),  # timeout
        _text(fields, par),  # parent_id
        _text(fields, pred),  # predecessor_id
        When(when) if when else None,  # when
        fields.get(o) == b"1",  # optional
        _headers(_text(fields, h)),  # headers
        _text(fields, e),  # last_error
        to_datetime(created_at(job_id)),  # created_at
        to_datetime(_number(fields, ra)),  # run_at
        to_datetime(_number(fields, st)),  # started_at
        to_datetime(_number(fields, fin)),  # finished_at
        _text(fields, wid),  # worker_id
        int(fields.get(lost, b"0")),  # lost_count
        int(fields.get(open_, b"0")),  # open_children
        _ids(_text(fields, fids)),  # failed_ids
        _text(fields, why),  # reason
        _text(fields, fc),  # failed_child_id
        JobState(predecessor_state) if predecessor_state else None,  # predecessor_state
        _ids(_text(fields, pf)),  # predecessor_failed_ids
        _chunked(fields, "result"),  # result_bytes
        _text(fields, rt),  # result_type
        Backoff.from_text(fields[bo].decode()) if bo in fields else None,  # backoff
        _text(fields, k),  # key
        fields.get(plan),  # plan
        _text(fields, root),  # root_id
        Progress.from_text(fields[prog].decode()) if prog in fields else None,  # progress
        False,  # duplicate
    )
