"""examples/node: a Node.js producer (protobufjs + the admin's HTTP API) enqueues jobs
that a Python worker runs, with the bytes a Python producer would have stored."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.admin import create_app
from conveyor.admin.server import AdminServer, bind
from conveyor.core.type_registry import descriptor_set
from tests.cli.procs import ROOT

EXAMPLE = ROOT / "examples" / "node"


async def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout (Node 18 may warn on stderr that fetch is experimental)."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


@pytest.fixture(scope="module")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with its locked dependencies installed (npm ci), outside the repository."""
    folder = tmp_path_factory.mktemp("node")
    for name in ("producer.mjs", "package.json", "package-lock.json"):
        shutil.copy(EXAMPLE / name, folder / name)
    asyncio.run(run("npm", "ci", "--no-audit", "--no-fund", cwd=folder))
    return folder


async def test_a_node_producer_enqueues_what_a_python_worker_runs(
    node_example: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = conveyor.Config(url=sqlite_url)
    seen: list[tuple[str, int]] = []
    worker = conveyor.Worker(config, claim_wait=0.2)

    @worker.handler
    async def basic(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        seen.append((msg.name, msg.count))

    server = AdminServer(create_app(config), bind("127.0.0.1", 0))
    await server.start()
    try:
        async with conveyor.AsyncClient(config) as client:
            storage = await client.storage()  # a worker publishes its types; so does this
            await storage.publish_types({BasicJob.DESCRIPTOR.full_name: descriptor_set(BasicJob)})
            env = {
                "PATH": os.environ["PATH"],
                "CONVEYOR_ADMIN_URL": server.url,
                "PROTO": str(ROOT / "protos" / "examples" / "basic.proto"),
            }
            job_id = (
                await run("node", "producer.mjs", "Zoë", "7", cwd=node_example, env=env)
            ).strip()
            stored = await client.get(job_id)
            assert stored is not None
            assert stored.payload_bytes == BasicJob(name="Zoë", count=7).SerializeToString()
            await worker.run_until_idle(timeout=30)
            assert (await client.get(job_id)).state is conveyor.JobState.SUCCEEDED  # type: ignore[union-attr]
    finally:
        await server.stop()
    assert seen == [("Zoë", 7)]


async def test_the_api_refuses_bytes_that_are_not_the_type(
    node_example: Path, sqlite_url: str
) -> None:
    config = conveyor.Config(url=sqlite_url)
    server = AdminServer(create_app(config), bind("127.0.0.1", 0))
    await server.start()
    try:
        async with conveyor.AsyncClient(config) as client:
            storage = await client.storage()
            await storage.publish_types({BasicJob.DESCRIPTOR.full_name: descriptor_set(BasicJob)})
            script = (
                "import('./producer.mjs').then(m => m.enqueue('conveyor.examples.BasicJob', "
                "{name: 42})).catch(e => { console.log(e.message); process.exit(3) })"
            )
            env = {"PATH": os.environ["PATH"], "CONVEYOR_ADMIN_URL": server.url,
                   "PROTO": str(ROOT / "protos" / "examples" / "basic.proto")}  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                "node", "-e", script, cwd=node_example, env=env, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert proc.returncode == 3
            assert "name: string expected" in out.decode()  # protobufjs checked it first
            assert (await storage.list_jobs(conveyor.core.storage.JobFilter())).jobs == []
    finally:
        await server.stop()
