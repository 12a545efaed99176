"""Testing your jobs with Conveyor's pytest fixtures (docs/testing.md).

pytest examples/testing          # no server needed: the fixtures use memory://
"""

from __future__ import annotations

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from examples.testing import jobs


def test_a_signup_sends_its_welcome_then_reports(conveyor_client, conveyor_worker):
    worker = conveyor_worker(jobs.worker)  # the app's worker, on the test's storage
    signup = conveyor_client.enqueue(Step(name="signup:ann@example.com"))
    worker.drain()  # runs it, its children, and its heir, then returns
    done = conveyor_client.get(signup.id)
    assert done.state is conveyor.JobState.SUCCEEDED
    assert "ann@example.com" in jobs.SENT


def test_a_busy_mail_server_is_retried(conveyor_client, conveyor_worker):
    worker = conveyor_worker(jobs.worker)
    welcome = conveyor_client.enqueue(Step(name="welcome:bob@example.com", fail_times=1))
    worker.drain()  # waits out the retry's back-off (10 ms in tests)
    done = conveyor_client.get(welcome.id)
    assert (done.state, done.attempt) == (conveyor.JobState.SUCCEEDED, 2)


async def test_in_an_async_test(conveyor_config, conveyor_worker):
    worker = conveyor_worker(jobs.worker)
    async with conveyor.AsyncClient(conveyor_config) as client:
        job = await client.enqueue(Step(name="signup:cy@example.com"))
        await worker.run_until_idle(timeout=30)
        assert (await client.get(job.id)).state is conveyor.JobState.SUCCEEDED
