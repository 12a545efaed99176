"""What every executor of the rulebook shares: its constants and its pure decisions.

The rules are stated in words in ``docs/rules.md``; each backend carries them
out in one module of transitions (memory ``transitions.py``, Redis
``lua/transitions.lua``, SQL ``transitions.py``), with the names listed in
``TRANSITIONS``, in that order. The Redis scripts get these constants through
``lua/constants.lua``, generated from this module and ``redis/layout.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .errors import DuplicateJobId
from .states import JobState, When

if TYPE_CHECKING:
    from .job import JobSpec

#: The transitions each executor defines, in the order it defines them
#: (``tests/unit/test_rulebook.py`` holds every executor to it).
TRANSITIONS = (
    "release",
    "holds",
    "discard_declarations",
    "take_key",
    "free_key",
    "enqueue",
    "allowance",
    "claim",
    "stage",
    "renew",
    "progress",
    "succeed",
    "retry_later",
    "fail",
    "hand_back",
    "lose_lease",
    "record",
    "settle",
    "release_heirs",
    "close_child",
    "interrupt",
    "cancel",
    "repair",
    "rearm_heirs",
    "retry",
    "retry_failed",
    "discard",
    "pause_queue",
    "limit_queue",
    "promote_due",
    "prune",
    "reconcile",
    "maintain",
)

#: Rule 14: seconds before a claim looks again at a queue whose ``max_running`` holds
#: back ready jobs (a rate's next token is waited for exactly).
LIMIT_POLL = 0.05

#: Rule 11: a family's ``failed_ids`` keeps this many ids at most.
MAX_FAILED_IDS = 1000

#: Jobs one maintenance step promotes, recovers or prunes at most, per kind.
MAINTENANCE_BATCH = 1000

#: Waiting jobs, and held heirs, one maintenance step reconciles at most (rule 7).
RECONCILE_BATCH = 100

#: Reasons and errors, as ``%``-templates so that Lua formats them alike.
CHILD_REASON = "child %s %s"
PREDECESSOR_REASON = "predecessor %s %s"
ANCESTOR_CANCELLED = "ancestor %s cancelled"
WORKER_LOST = "worker lost: lease expired %d times"
DUPLICATE_REASON = "duplicate: key %s held by %s"

#: Why rule 8 refuses a repair.
NOT_FAILED = "only failed or cancelled jobs"
FAILED_BY_FAMILY = (
    "its handler succeeded; it %s because of its family: retry the members that failed "
    "(retry_failed retries them all)"
)
NEVER_RELEASED = (
    "it is an heir that never ran; one cancelled by its condition is re-armed when its "
    "predecessor's family is repaired"
)
ANCESTOR_SETTLED = "ancestor %s is %s: repair re-opens only families that failed"
FAMILY_PRUNED = "its family was pruned: parent %s is gone"


def heir_runs(when: When | None, predecessor: JobState) -> bool:
    """Rule 4: whether an heir is released when its predecessor settles as ``predecessor``."""
    return when is When.SETTLED or predecessor is JobState.SUCCEEDED


def fails_parent(state: JobState, optional: bool) -> bool:
    """Rule 3: whether a child settling as ``state`` fails its parent."""
    return state is not JobState.SUCCEEDED and not optional


def settles_as(failing_child: str | None) -> JobState:
    """Rule 3: how a waiting parent settles once no member of its family is open."""
    return JobState.FAILED if failing_child else JobState.SUCCEEDED


def lease_loss_fails(lost_count: int, max_lost: int) -> bool:
    """Rule 6: whether a job whose lease has now expired ``lost_count`` times fails for good."""
    return lost_count > max_lost


def released_heir(when: When | None, predecessor: JobState | None) -> bool:
    """Rule 4: whether an heir whose predecessor settled as ``predecessor`` was released."""
    return predecessor is not None and heir_runs(when, predecessor)


def cancelled_by_condition(when: When | None, predecessor: JobState | None) -> bool:
    """Rule 8: whether a cancelled heir was cancelled by its condition (it is re-armed)."""
    return predecessor is not None and not heir_runs(when, predecessor)


def reopens(open_children: int, failing_children: int) -> bool:
    """Rule 8: whether a re-counted ``failed`` ancestor goes back to ``waiting``."""
    return open_children > 0 and failing_children == 0


def merge_failed_ids(existing: Sequence[str], more: Iterable[str]) -> list[str]:
    """Rule 11: ``existing`` followed by ``more``, cut to the first ``MAX_FAILED_IDS``."""
    merged = list(existing[:MAX_FAILED_IDS])
    for job_id in more:
        if len(merged) >= MAX_FAILED_IDS:
            break
        merged.append(job_id)
    return merged


def child_reason(child_id: str, state: JobState | str) -> str:
    """Rule 3: why a parent failed."""
    return CHILD_REASON % (child_id, state)


def predecessor_reason(predecessor_id: str, state: JobState | str) -> str:
    """Rule 4: why an heir was cancelled by its condition."""
    return PREDECESSOR_REASON % (predecessor_id, state)


def ancestor_cancelled(ancestor_id: str) -> str:
    """Rule 3: why a member below a cancelled job was cancelled."""
    return ANCESTOR_CANCELLED % ancestor_id


def duplicate_reason(key: str, holder: str) -> str:
    """Rule 15: why a released declaration whose key was held did not run."""
    return DUPLICATE_REASON % (key, holder)


def worker_lost(lost_count: int) -> str:
    """Rule 6: the error of a job that lost its lease too often."""
    return WORKER_LOST % lost_count


def failed_by_family(state: JobState | str) -> str:
    """Rule 8: why a job whose handler succeeded is not repaired itself."""
    return FAILED_BY_FAMILY % state


def ancestor_settled(ancestor_id: str, state: JobState | str) -> str:
    """Rule 8: why a member under a cancelled or succeeded ancestor is not repaired."""
    return ANCESTOR_SETTLED % (ancestor_id, state)


def family_pruned(parent_id: str) -> str:
    """Rule 8: why a member whose parent is gone is not repaired."""
    return FAMILY_PRUNED % parent_id


def check_new_jobs(specs: Sequence[JobSpec]) -> None:
    """Rule 9: a batch to enqueue holds top-level jobs with distinct ids.

    Raises:
        DuplicateJobId: an id appears twice in the batch.
        ValueError: a spec has a parent or predecessor (only running jobs declare those).
    """
    seen: set[str] = set()
    for spec in specs:
        if spec.parent_id or spec.predecessor_id:
            raise ValueError("only a running job declares children and heirs")
        if spec.id in seen:
            raise DuplicateJobId(spec.id)
        seen.add(spec.id)


def check_declarations(specs: Sequence[JobSpec], declarer: str) -> None:
    """Rule 9 for a running attempt's declarations: distinct ids, all its own.

    Raises:
        DuplicateJobId: an id appears twice in the batch.
        ValueError: a declaration is neither a child nor an heir of ``declarer``.
    """
    seen: set[str] = set()
    for spec in specs:
        if spec.parent_id != declarer and spec.predecessor_id != declarer:
            raise ValueError(f"declaration {spec.id} does not belong to job {declarer}")
        if spec.id in seen:
            raise DuplicateJobId(spec.id)
        seen.add(spec.id)
