"""Families declared by the producer (``AsyncClient.enqueue_family``).

A producer-declared family is stored with its root: each job carries the
members it declares (its ``plan``: children and heirs, each with its own plan),
and its worker stages them at the start of every attempt, as its handler would
with ``enqueue_child`` and ``enqueue_heir``. The accounting is therefore the
rulebook's own, with nothing added: members are held declarations released by
the success of the attempt that staged them (rule 1), discarded with a failed
attempt and staged again by the next (rule 2), and ids make staging again
harmless (rule 9). The whole tree is stored in one atomic enqueue of its root.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Unpack

from .config import Backoff, Config
from .errors import InvalidJobOptions
from .job import Job, JobSpec
from .specs import TOP_LEVEL, EnqueueOptions, Family, build_spec, initial_state, job_of
from .states import JobState, When

#: Members one producer-declared family holds at most; a larger fan-out is declared by
#: its running parent (``enqueue_child``), which stages in batches.
MAX_PLANNED = 10_000


class Member:
    """A member of a family declared by the producer: a message, its options, and the
    children and heirs it declares in turn.

    ``children`` and ``heirs`` hold messages or ``Member``s. ``optional`` applies when
    it is a child, ``when`` when it is an heir.
    """

    def __init__(
        self,
        message: object,
        *,
        children: Sequence[object] = (),
        heirs: Sequence[object] = (),
        optional: bool = False,
        when: When = When.SUCCEEDED,
        **options: Unpack[EnqueueOptions],
    ) -> None:
        self.message = message
        self.children = list(children)
        self.heirs = list(heirs)
        self.optional = optional
        self.when = When(when)
        self.options = options


@dataclass(frozen=True, slots=True)
class PlannedFamily:
    """What ``enqueue_family`` returns: the root as stored, and each member as it will
    be staged (``held``; it exists in storage once its declarer's attempt starts)."""

    job: Job
    children: list[PlannedFamily] = field(default_factory=list)
    heirs: list[PlannedFamily] = field(default_factory=list)

    def jobs(self) -> list[Job]:
        """Every job of the family, the root first, depth first."""
        found = [self.job]
        for member in (*self.children, *self.heirs):
            found.extend(member.jobs())
        return found


def build_family(
    config: Config,
    root: object,
    children: Sequence[object],
    heirs: Sequence[object],
    options: EnqueueOptions,
) -> tuple[JobSpec, PlannedFamily]:
    """The root's spec, carrying the whole plan, and the family as ids and jobs.

    Raises:
        InvalidJobOptions: a member's options are wrong, a member gives a ``key``,
            or the family has more than ``MAX_PLANNED`` members.
        PayloadTypeError, PayloadTooLarge: a message cannot be a payload.
    """
    whole = Member(root, children=children, heirs=heirs, **options)
    return _build(config, whole, TOP_LEVEL, counted=[0], root_id=None)


def _build(
    config: Config, member: object, family: Family, counted: list[int], root_id: str | None
) -> tuple[JobSpec, PlannedFamily]:
    if not isinstance(member, Member):
        member = Member(member)
    if family is not TOP_LEVEL:
        counted[0] += 1
        if counted[0] > MAX_PLANNED:
            raise InvalidJobOptions(
                f"a family declared by the producer holds at most {MAX_PLANNED} members; "
                "let a running job declare a larger fan-out (ctx.enqueue_child)"
            )
    spec = build_spec(config, member.message, family=family, **member.options)
    root_id = root_id or spec.id
    declared: list[JobSpec] = []
    kids: list[PlannedFamily] = []
    heirs: list[PlannedFamily] = []
    for child in member.children:
        below = Family(parent_id=spec.id, optional=_optional(child), root_id=root_id)
        child_spec, child_tree = _build(config, child, below, counted, root_id)
        declared.append(child_spec)
        kids.append(child_tree)
    for heir in member.heirs:
        after = Family(predecessor_id=spec.id, when=_when(heir), root_id=root_id)
        heir_spec, heir_tree = _build(config, heir, after, counted, root_id)
        declared.append(heir_spec)
        heirs.append(heir_tree)
    if declared:
        spec = replace(spec, plan=encode_plan(declared))
    state = initial_state(spec) if family is TOP_LEVEL else JobState.HELD
    return spec, PlannedFamily(job_of(spec, state), kids, heirs)


def _optional(member: object) -> bool:
    return member.optional if isinstance(member, Member) else False


def _when(member: object) -> When:
    return member.when if isinstance(member, Member) else When.SUCCEEDED


def encode_plan(specs: Sequence[JobSpec]) -> bytes:
    """The members a job declares, as stored with it (compact JSON)."""
    return json.dumps([_spec_data(s) for s in specs], separators=(",", ":")).encode()


def decode_plan(data: bytes) -> list[JobSpec]:
    """``encode_plan``'s members again.

    Raises:
        ValueError: the bytes are not a plan.
    """
    found = json.loads(data)
    if not isinstance(found, list):
        raise ValueError("a plan is a JSON list")
    return [_spec_of(item) for item in found]


def _spec_data(spec: JobSpec) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": spec.id,
        "type": spec.type,
        "queue": spec.queue,
        "payload": base64.b64encode(spec.payload).decode(),
        "max_attempts": spec.max_attempts,
    }
    optional = {
        "run_at": spec.run_at,
        "timeout": spec.timeout,
        "priority": spec.priority or None,
        "headers": dict(spec.headers) or None,
        "parent_id": spec.parent_id,
        "predecessor_id": spec.predecessor_id,
        "when": spec.when.value if spec.when else None,
        "optional": spec.optional or None,
        "backoff": spec.backoff.to_text() if spec.backoff else None,
        "plan": json.loads(spec.plan) if spec.plan else None,  # nested, not re-encoded
        "root_id": spec.root_id,
    }
    data.update((k, v) for k, v in optional.items() if v is not None)
    return data


def _spec_of(data: dict[str, Any]) -> JobSpec:
    return JobSpec(
        id=data["id"],
        type=data["type"],
        queue=data["queue"],
        payload=base64.b64decode(data["payload"]),
        run_at=data.get("run_at"),
        max_attempts=data["max_attempts"],
        timeout=data.get("timeout"),
        priority=data.get("priority", 0),
        headers=data.get("headers") or {},
        parent_id=data.get("parent_id"),
        predecessor_id=data.get("predecessor_id"),
        when=When(data["when"]) if data.get("when") else None,
        optional=data.get("optional", False),
        backoff=Backoff.from_text(data["backoff"]) if data.get("backoff") else None,
        root_id=data.get("root_id"),
        plan=json.dumps(data["plan"], separators=(",", ":")).encode() if data.get("plan") else None,
    )


__all__ = ["MAX_PLANNED", "Member", "PlannedFamily", "decode_plan", "encode_plan"]
