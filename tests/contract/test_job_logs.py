"""Log records about a job carry it (id, type, queue, attempt, family root); final
failures log at ERROR and retries at WARNING, both with the traceback; sync handlers
see the context variables set around them; every declaration knows its family root."""

from __future__ import annotations

import contextvars
import json
import logging

import pytest

import conveyor
from conveyor import JobState, Member
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.cli import _JsonFormatter
from conveyor.core.storage import Storage
from tests.support import running, settle

REQUEST = contextvars.ContextVar("request", default="none")


async def test_records_carry_the_job_and_its_family_root(
    config: conveyor.Config,
    client: conveyor.AsyncClient,
    storage: Storage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    worker = conveyor.Worker(config, claim_wait=0.2, maintenance_interval=0.05)

    @worker.handler
    def run(ctx: conveyor.JobContext, msg: BasicJob) -> None:  # sync: in the thread pool
        seen.append(REQUEST.get())
        ctx.log.info("working on %s", msg.name, extra={"step": "one"})
        if msg.name == "root":
            ctx.enqueue_child(BasicJob(name="child"))
            ctx.enqueue_heir(BasicJob(name="heir"))
        elif msg.name == "child":
            ctx.enqueue_child(BasicJob(name="grandchild"))
        elif msg.name == "grandchild" and ctx.job.attempt < 2:
            raise RuntimeError("grandchild breaks once")
        elif msg.name == "doomed":
            raise RuntimeError("doomed breaks every time")

    caplog.set_level(logging.INFO, logger="conveyor")
    REQUEST.set("req-42")  # the worker's tasks copy this context; its threads must too
    async with running(worker):
        root = await client.enqueue(BasicJob(name="root"), max_attempts=2)
        doomed = await client.enqueue(BasicJob(name="doomed"), max_attempts=1)
        await settle(client, root.id)
        await settle(client, doomed.id)
        tree = await storage.family_tree(root.id)
    assert set(seen) == {"req-42"}
    by_name = {job.payload().name: job for job in tree}  # type: ignore[attr-defined]
    assert by_name["root"].root_id is None and by_name["root"].family_root == root.id
    for name in ("child", "grandchild", "heir"):
        assert by_name[name].root_id == root.id, name
        assert by_name[name].family_root == root.id

    mine = [r for r in caplog.records if r.name == "conveyor.job"]
    grandchild = by_name["grandchild"]
    assert {(r.getMessage(), r.job_id, r.family_root, r.step) for r in mine} >= {  # type: ignore[attr-defined]
        ("working on grandchild", grandchild.id, root.id, "one"),
        ("working on root", root.id, root.id, "one"),
    }
    retry = [r for r in caplog.records if "grandchild breaks once" in r.getMessage()]
    assert [(r.levelno, r.job_id, r.attempt) for r in retry] == [  # type: ignore[attr-defined]
        (logging.WARNING, grandchild.id, 1)
    ]
    assert retry[0].exc_info is not None and "retrying" in retry[0].getMessage()
    final = [r for r in caplog.records if "doomed breaks" in r.getMessage()]
    assert [(r.levelno, r.job_id, r.family_root) for r in final] == [  # type: ignore[attr-defined]
        (logging.ERROR, doomed.id, doomed.id)
    ]
    assert final[0].exc_info is not None and "failed for good" in final[0].getMessage()
    line = json.loads(_JsonFormatter().format(final[0]))
    assert (line["level"], line["job_id"], line["queue"], line["attempt"]) == (
        "ERROR",
        doomed.id,
        "conveyor.examples.BasicJob",
        1,
    )
    assert "RuntimeError: doomed breaks every time" in line["exception"]


async def test_members_of_a_declared_family_know_its_root(
    client: conveyor.AsyncClient,
) -> None:
    family = await client.enqueue_family(
        BasicJob(name="root"),
        children=[Member(BasicJob(name="kid"), children=[BasicJob(name="grandkid")])],
        heirs=[BasicJob(name="after")],
    )
    members = family.jobs()[1:]
    assert {job.root_id for job in members} == {family.job.id}
    assert family.job.state is JobState.QUEUED and family.job.root_id is None
