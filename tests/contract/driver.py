"""Drive a family through storage by hand, one attempt at a time.

Every job gets a queue of its own name, so ``run("b")`` claims exactly job
``b``: tests decide the order of events instead of a worker's timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import conveyor
from conveyor import JobState, When
from conveyor.core.job import JobSpec
from conveyor.core.specs import Family, build_spec
from conveyor.core.storage import Failure, Storage, Success
from tests.support import step


@dataclass(frozen=True)
class Kid:
    """A child (or, with ``when``, an heir) to declare."""

    name: str
    optional: bool = False
    when: When | None = None


@dataclass
class Driver:
    storage: Storage
    config: conveyor.Config
    ids: dict[str, str] = field(default_factory=dict)

    def spec(self, name: str, family: Family | None = None) -> JobSpec:
        spec = build_spec(self.config, step(name), queue=name, family=family or Family())
        self.ids[name] = spec.id
        return spec

    async def enqueue(self, name: str) -> str:
        await self.storage.enqueue([self.spec(name)])
        return self.ids[name]

    async def run(
        self,
        name: str,
        *declared: Kid,
        fail: bool = False,
        result: bytes | None = None,
    ) -> None:
        """Claim job ``name``; it declares ``declared`` and succeeds, or fails for good."""
        [claimed] = await self.storage.claim("w", [name], 1, 30.0, 0.0)
        me = claimed.job.id
        if fail:
            assert await self.storage.record([Failure(claimed.lease, f"{name} failed")]) == [True]
            return
        specs = [
            self.spec(
                kid.name,
                Family(predecessor_id=me, when=kid.when)
                if kid.when
                else Family(parent_id=me, optional=kid.optional),
            )
            for kid in declared
        ]
        rtype = step("x").DESCRIPTOR.full_name if result is not None else None
        outcome = Success(claimed.lease, specs, result=result, result_type=rtype)
        assert await self.storage.record([outcome]) == [True]

    async def job(self, name: str) -> conveyor.Job:
        found = await self.storage.get(self.ids[name])
        assert found is not None, name
        return found

    async def state(self, name: str) -> JobState:
        return (await self.job(name)).state

    async def states(self, *names: str) -> dict[str, JobState]:
        return {name: await self.state(name) for name in names}
