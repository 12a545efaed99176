"""bench.processes and bench.families: the CLI drain runs every job, children and heirs
included, through ``conveyor worker`` with several processes, and cleans up after itself."""

from __future__ import annotations

import pytest

from bench import processes
from conveyor._proto.examples.basic_pb2 import BasicJob

URLS = {  # the test suite's databases, not the bench's
    "redis": "redis://127.0.0.1:6379/15",
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
}


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
async def test_a_cli_drain_runs_families_and_flat_jobs_on_two_processes(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(processes.URLS, backend, URLS[backend])
    seen: list[str] = []
    real_drop = processes.drop

    async def drop(backend: str, url: str, namespace: str) -> None:
        seen.append(namespace)
        await real_drop(backend, url, namespace)

    monkeypatch.setattr(processes, "drop", drop)
    jobs = [BasicJob(name="parent", count=10)] * 2 + [BasicJob(count=7)]
    from_spawn, drained = await processes.cli_drain(backend, "noop", 2, "auto", jobs, 2 * 12 + 1)
    # It returned: 25 jobs succeeded (2 parents, 20 children, 2 heirs, 1 flat job); a
    # missing child or heir would have kept it polling past the test's timeout.
    assert 0 < from_spawn <= drained
    assert len(seen) == 1  # its namespace, dropped
    assert seen[0].startswith("bench_procs_")
