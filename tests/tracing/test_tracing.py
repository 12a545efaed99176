"""OpenTelemetry (docs: README "Tracing"): an enqueue is a PRODUCER span whose context
travels in the job's headers; each attempt a CONSUMER span under it; declarations
carry the attempt's context (from sync handlers too), so a family is one trace and an
heir is also linked to its predecessor; a malformed traceparent is a warning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.procs import ROOT, child_env

SCRIPT = Path(__file__).with_name("trace_script.py")


@pytest.fixture(params=["redis", "postgres"])
def traced(request: pytest.FixtureRequest, namespace: str) -> dict[str, Any]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), url, namespace],
        cwd=ROOT,
        env=child_env(None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_family_is_one_trace(traced: dict[str, Any]) -> None:
    jobs = {j["name"]: j for j in traced["jobs"]}
    spans = traced["spans"]
    process = {s["attributes"]["messaging.message.id"]: s for s in spans if s["kind"] == "CONSUMER"}
    sends = [s for s in spans if s["kind"] == "PRODUCER"]
    root = jobs["root"]
    root_span = process[root["id"]]
    [send] = [s for s in sends if s["attributes"].get("messaging.message.id") == root["id"]]
    assert send["name"] == "send conveyor.examples.BasicJob"
    assert root["headers"]["traceparent"].split("-")[1] == send["trace"]
    assert root_span["parent"] == send["span"] and root_span["trace"] == send["trace"]
    for name in ("sync-child", "child", "heir"):
        span = process[jobs[name]["id"]]
        assert span["trace"] == send["trace"], name
        assert span["parent"] == root_span["span"], name  # declared during root's attempt
    grandchild = process[jobs["grandchild"]["id"]]
    assert grandchild["parent"] == process[jobs["sync-child"]["id"]]["span"]  # a sync handler
    assert process[jobs["heir"]["id"]]["links"] == [root_span["span"]]
    attributes = process[jobs["grandchild"]["id"]]["attributes"]
    assert attributes["conveyor.family.root"] == root["id"]
    assert attributes["conveyor.job.attempt"] == 1
    assert attributes["messaging.system"] == "conveyor"
    assert root_span["name"] == "process conveyor.examples.BasicJob"


def test_a_failed_attempt_is_an_error_span_and_a_bad_traceparent_a_warning(
    traced: dict[str, Any],
) -> None:
    jobs = {j["name"]: j for j in traced["jobs"]}
    process = {
        s["attributes"]["messaging.message.id"]: s
        for s in traced["spans"]
        if s["kind"] == "CONSUMER"
    }
    assert process[jobs["broken"]["id"]]["status"] == "ERROR"
    assert jobs["broken"]["state"] == "failed"
    odd = jobs["odd"]
    assert odd["state"] == "succeeded"  # it ran all the same, in a trace of its own
    assert odd["headers"]["traceparent"] == "not-a-trace"  # the job's own header wins
    assert any("malformed" in w and odd["id"] in w for w in traced["warnings"])


def test_the_sync_clients_enqueue_is_a_child_of_the_callers_span(
    traced: dict[str, Any],
) -> None:
    """``Client.enqueue`` from a traced request: its PRODUCER span is under the
    request's span (on Redis it runs in the caller's thread; elsewhere the portal loop
    runs it in a copy of the caller's context), and the attempt under that."""
    jobs = {j["name"]: j for j in traced["jobs"]}
    spans = traced["spans"]
    [request] = [s for s in spans if s["name"] == "request"]
    job_id = jobs["from-sync"]["id"]
    [send] = [
        s
        for s in spans
        if s["kind"] == "PRODUCER" and s["attributes"].get("messaging.message.id") == job_id
    ]
    [attempt] = [
        s
        for s in spans
        if s["kind"] == "CONSUMER" and s["attributes"].get("messaging.message.id") == job_id
    ]
    assert send["parent"] == request["span"] and send["trace"] == request["trace"]
    assert attempt["parent"] == send["span"] and attempt["trace"] == request["trace"]
    assert jobs["from-sync"]["state"] == "succeeded"
