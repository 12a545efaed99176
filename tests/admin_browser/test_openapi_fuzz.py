"""The JSON API, fuzzed from its own OpenAPI document: no request makes it answer 500.

Schemathesis generates valid and invalid requests for every operation of
``/api/schema/openapi.json`` and sends them in-process (ASGI) with basic auth,
to an admin whose store holds jobs in most states (seeded by a real worker). A
second test sends each job-id operation the real ids, which random
generation would never guess.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import hypothesis
import hypothesis.errors
import hypothesis.strategies as st
import pytest
import schemathesis
import schemathesis.python.asgi
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.admin import BasicAuth, create_app
from tests.support import FAST_BACKOFF, Journal, running, step, step_worker

pytestmark = [pytest.mark.memory, pytest.mark.timeout(120)]

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:secret").decode()}
SCHEMA_PATH = "/api/schema/openapi.json"
ACTIONS = ("cancel", "retry", "discard")


async def seed(config: conveyor.Config) -> dict[str, str]:
    """Jobs in most states, by name: a worker runs a family that fails, then stops."""
    journal = Journal()
    family = step(
        "root",
        children=[step("fine"), step("broken", fail=True)],
        heirs=[step("after")],  # cancelled: root fails
    )
    async with conveyor.AsyncClient(config) as client:
        async with running(step_worker(config, journal)):
            root = await client.enqueue(family, max_attempts=1)
            lone = await client.enqueue(step("lone", fail=True), max_attempts=1)
            for job in (root, lone):
                await client.wait(job.id, timeout=20)
        queued = await client.enqueue(step("queued"))
        scheduled = await client.enqueue(step("scheduled"), delay=timedelta(hours=1))
    return journal.ids | {"queued": queued.id, "scheduled": scheduled.id}


@pytest.fixture
def admin(memory_url: str, namespace: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """The admin app with basic auth over a seeded store, and the seeded jobs' ids."""
    config = conveyor.Config(url=memory_url, namespace=namespace, backoff=FAST_BACKOFF)
    ids = asyncio.run(seed(config))
    app = create_app(config, auth=BasicAuth("admin", "secret"), types=[Step])
    yield app, ids
    # Schemathesis keeps an app's lifespan running until the process exits; end it now.
    schemathesis.python.asgi.shutdown_lifespans()


@pytest.fixture
def api_schema(admin: tuple[Any, dict[str, str]]) -> Any:
    app, _ = admin
    schema = schemathesis.openapi.from_asgi(SCHEMA_PATH, app, headers=AUTH)
    assert len(list(schema.get_all_operations())) >= 12
    return schema


SETTINGS = hypothesis.settings(
    max_examples=25,
    derandomize=True,  # the same requests every run
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
)
STEP = Step.DESCRIPTOR.full_name
MISSING = "01900000-0000-7000-8000-000000000000"  # a well-formed id no job has


def of_a_known_type(case: schemathesis.Case, empty_payload: bool) -> schemathesis.Case:
    """An enqueue of the published type, so that fuzzing gets past the type lookup (and,
    with an empty payload, past decoding) to the options: queue, delay, attempts..."""
    if isinstance(case.body, dict) and "type" in case.body:
        case.body = case.body | {"type": STEP} | ({"payload": {}} if empty_payload else {})
    return case


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_request_makes_a_server_error(
    api_schema: Any, mode: schemathesis.GenerationMode
) -> None:
    """Up to 25 generated requests per operation; every operation is tried, all 500s reported."""
    failures: dict[str, str] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        strategy = operation.as_strategy(generation_mode=mode)
        if label == "POST /api/jobs":
            strategy = st.builds(of_a_known_type, strategy, st.booleans())

        @SETTINGS
        @hypothesis.given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

        try:
            check()
        except hypothesis.errors.Unsatisfiable:  # nothing in this operation can be made invalid
            continue
        except (Exception, FailureGroup) as exc:  # note this operation's failure, go on
            failures[label] = str(exc)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_known_jobs_and_types_make_no_server_error(
    api_schema: Any, admin: tuple[Any, dict[str, str]]
) -> None:
    """What random generation would never guess: the seeded jobs' ids, the published type."""
    _, ids = admin

    def call(path: str, method: str, **parts: Any) -> Any:
        case = api_schema[path][method].Case(**parts)
        return case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

    for name, job_id in [*sorted(ids.items()), ("missing", MISSING)]:
        for path in ["/api/jobs/{job_id}", "/api/jobs/{job_id}/family"]:
            response = call(path, "GET", path_parameters={"job_id": job_id})
            assert response.status_code == (404 if name == "missing" else 200), (path, name)
        for action in ACTIONS:  # each on the job as the previous one left it
            path = "/api/jobs/{job_id}/" + action
            response = call(path, "POST", path_parameters={"job_id": job_id}, body={})
            assert response.status_code in (200, 404, 409), (action, name, response.text)

    for action in ACTIONS:
        body = {"action": action, "ids": [*ids.values(), MISSING]}
        assert call("/api/jobs/bulk", "POST", body=body).status_code == 200
        body = {"action": action, "filter": {"type": STEP}}
        assert call("/api/jobs/bulk", "POST", body=body).status_code == 200

    good = {"type": STEP, "payload": {"name": "from the API", "children": [{"name": "kid"}]}}
    assert call("/api/jobs", "POST", body=good).status_code == 201
    for odd in [
        {"payload": {"nope": 1}},
        {"payload": {"name": 5}},
        {"payload": {"children": "not a list"}},
        {"payload": {"sleep_seconds": "slow"}},
        {"delay_seconds": -5},
        {"delay_seconds": 1e12},
        {"delay_seconds": 1e308},
        {"timeout_seconds": -1},
        {"timeout_seconds": 1e308},
        {"max_attempts": 0},
        {"priority": 2**40},
        {"queue": ""},
        {"queue": "q" * 10_000},
        {"queue": "\x00"},
        {"type": ""},
        {"type": "google.protobuf.Empty"},
    ]:
        response = call("/api/jobs", "POST", body={"type": STEP, "payload": {}} | odd)
        assert 400 <= response.status_code < 500, (odd, response.status_code, response.text)
