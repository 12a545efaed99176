"""A reference model of the accounting rules (docs/rules.md), in plain Python.

It knows nothing of conveyor's backends: given a tree of ``Spec`` (what a
``Step`` payload tells the test worker to do), it predicts which jobs exist,
how often each one's handler runs, how each settles, which parent each counts
against, and what each heir learns about its predecessor. The outcome of a
family does not depend on timing, so one prediction holds for every run.

States are plain strings equal to ``conveyor.JobState`` values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"


@dataclass
class Spec:
    """One step: what its handler does and what it declares."""

    name: str
    children: list[Spec] = field(default_factory=list)
    heirs: list[Spec] = field(default_factory=list)
    fail: bool = False
    """Fails every attempt, so it fails for good after ``max_attempts``."""
    fail_times: int = 0
    """Fails the first N attempts, then succeeds (if attempts remain)."""
    sleep: float = 0.0
    optional: bool = False
    """As a child: its failure does not fail the parent."""
    settled_heir: bool = False
    """As an heir: ``When.SETTLED`` (runs whatever the outcome) instead of ``SUCCEEDED``."""
    delay: float = 0.0
    key: str = ""
    """As a child: a unique key (rule 15), taken when its declarer succeeds."""

    def walk(self) -> Iterator[Spec]:
        """This step and every step nested in it (children and heirs), depth first."""
        yield self
        for sub in (*self.children, *self.heirs):
            yield from sub.walk()


@dataclass
class Outcome:
    """What the model predicts for one step that gets a job id."""

    name: str
    state: str
    attempts: int = 0
    """Handler runs (0 for an heir cancelled by its condition)."""
    succeeded: bool = False
    """Whether one attempt succeeded (never more than one)."""
    parent: str | None = None
    """The job it counts against: its declarer for a child, its predecessor's
    parent for a released heir, ``None`` for the root and for a cancelled heir."""
    predecessor: str | None = None
    """For an heir: the job that declared it."""
    declared_by: str | None = None
    optional: bool = False
    """The optional flag it carries: a child's own, a released heir's predecessor's."""
    failed_for_good: bool = False
    family_failed: frozenset[str] = frozenset()
    """Names of the jobs in its family (itself and everything below it) whose handler
    failed for good, as known when it settled (what its heirs see)."""
    predecessor_state: str | None = None
    predecessor_failed: frozenset[str] = frozenset()
    attempt_numbers: tuple[int, ...] = ()
    """``job.attempt`` at each handler run: 1, 2, ... and, after a repair, 1, 2, ... again."""

    @property
    def ran(self) -> bool:
        return self.attempts > 0

    @property
    def final_attempt(self) -> int:
        """``job.attempt`` once it has settled."""
        return self.attempt_numbers[-1] if self.attempt_numbers else 0


@dataclass
class Prediction:
    outcomes: dict[str, Outcome]
    never_exist: set[str]
    """Steps declared only by attempts that failed (or nested in them): no job, no run."""

    def members(self, name: str) -> set[str]:
        """``name`` and every job that counts, directly or not, against it."""
        below: dict[str | None, list[str]] = {}
        for outcome in self.outcomes.values():
            if outcome.ran:
                below.setdefault(outcome.parent, []).append(outcome.name)
        found = {name}
        stack = [name]
        while stack:
            for sub in below.get(stack.pop(), []):
                if sub not in found:
                    found.add(sub)
                    stack.append(sub)
        return found


def repairable(first: Prediction) -> set[str]:
    """Rule 8: the members ``retry`` would repair once ``first`` has settled: those whose
    own handler failed for good, every ancestor of which has failed."""
    found = set()
    for name, outcome in first.outcomes.items():
        if not outcome.failed_for_good:
            continue
        parent = outcome.parent
        while parent is not None and first.outcomes[parent].state == FAILED:
            parent = first.outcomes[parent].parent
        if parent is None:
            found.add(name)
    return found


def predict(
    root: Spec,
    *,
    root_max_attempts: int,
    max_attempts: int,
    first: Prediction | None = None,
    cured: frozenset[str] = frozenset(),
) -> Prediction:
    """Run ``root`` through the rules, with every other job allowed ``max_attempts``.

    With ``first``, the family settled as ``first`` says, then the members in
    ``cured`` (all repairable) were retried and from then on their handler no
    longer fails for good (rule 8): predict how it settles again.
    """
    outcomes: dict[str, Outcome] = {}
    before = first.outcomes if first is not None else {}

    def attempts_of(spec: Spec, limit: int) -> tuple[int, bool]:
        if spec.fail or spec.fail_times >= limit:
            return limit, False
        return spec.fail_times + 1, True

    def runs(spec: Spec, limit: int) -> tuple[int, bool, tuple[int, ...]]:
        """Handler runs in all, whether one succeeded, and the attempt number of each."""
        old = before.get(spec.name)
        if old is None or not old.ran:  # it runs now for the first time
            count, ok = attempts_of(spec, limit)
            return count, ok, tuple(range(1, count + 1))
        if old.succeeded or spec.name not in cured:
            return old.attempts, old.succeeded, old.attempt_numbers
        count, ok = attempts_of(replace(spec, fail=False), limit)  # fresh attempts
        return old.attempts + count, ok, old.attempt_numbers + tuple(range(1, count + 1))

    def run_job(spec: Spec, outcome: Outcome, limit: int) -> None:
        """The job runs; fill in its attempts, its settled state and its family's failures."""
        outcomes[spec.name] = outcome
        outcome.attempts, outcome.succeeded, outcome.attempt_numbers = runs(spec, limit)
        if not outcome.succeeded:
            # Rule 2 and 3: it settles failed; what it declared never exists.
            outcome.state = FAILED
            outcome.failed_for_good = True
            outcome.family_failed = frozenset({spec.name})
            return
        failed: set[str] = set()
        broken = False
        held: set[str] = set()  # keys taken by the siblings released before (rule 15)
        for child in spec.children:
            if child.key in held:
                # Rule 15: an earlier sibling, released with it, holds its key: it never
                # runs, settles cancelled as optional, and fails no one.
                outcomes[child.name] = Outcome(
                    child.name, CANCELLED, parent=spec.name, optional=True, declared_by=spec.name
                )
                continue
            if child.key:
                held.add(child.key)
            for state, child_failed, optional in run_unit(
                child, parent=spec.name, optional=child.optional
            ):
                failed |= child_failed
                if state != SUCCEEDED and not optional:
                    broken = True
        outcome.state = FAILED if broken else SUCCEEDED
        outcome.family_failed = frozenset(failed)

    def run_unit(
        spec: Spec,
        *,
        parent: str | None,
        optional: bool,
        predecessor: Outcome | None = None,
    ) -> list[tuple[str, frozenset[str], bool]]:
        """Run ``spec`` (released as a child of ``parent``, or as an heir) and then,
        in turn, the heirs its settling releases; return every settlement that
        counts against ``parent`` as (state, failed names, optional)."""
        outcome = Outcome(
            spec.name,
            state="",
            parent=parent,
            optional=optional,
            declared_by=predecessor.name if predecessor else parent,
            predecessor=predecessor.name if predecessor else None,
            predecessor_state=predecessor.state if predecessor else None,
            predecessor_failed=predecessor.family_failed if predecessor else frozenset(),
        )
        limit = root_max_attempts if spec is root else max_attempts
        run_job(spec, outcome, limit)
        settled = [(outcome.state, outcome.family_failed, optional)]
        if not outcome.succeeded:
            return settled
        old = before.get(spec.name)
        for heir in spec.heirs:
            if old is not None and old.succeeded and (heir.settled_heir or old.state == SUCCEEDED):
                # Released when the family first settled, with what it saw then; a repair
                # does not release it again (rule 8).
                settled += run_unit(heir, parent=parent, optional=optional, predecessor=old)
            elif heir.settled_heir or outcome.state == SUCCEEDED:
                # (A re-armed heir lands here when its predecessor re-opened and succeeded.)
                # Rule 4: released, it takes the predecessor's parent and optional flag.
                settled += run_unit(heir, parent=parent, optional=optional, predecessor=outcome)
            else:
                # Cancelled by its condition: counts against no one, declares nothing.
                outcomes[heir.name] = Outcome(
                    heir.name,
                    CANCELLED,
                    predecessor=spec.name,
                    declared_by=spec.name,
                    predecessor_state=outcome.state,
                    predecessor_failed=outcome.family_failed,
                )
        return settled

    run_unit(root, parent=None, optional=False)
    never = {spec.name for spec in root.walk()} - set(outcomes)
    return Prediction(outcomes, never)
