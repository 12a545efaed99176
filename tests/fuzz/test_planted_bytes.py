"""Bytes that are not a valid job, planted in storage under a running worker.

Jobs whose payload does not decode as their type, jobs of a type no worker
handles, jobs whose stored fields were garbled behind Conveyor's back (Redis
hashes, SQL rows), and payload text that breaks the storing of an error. Each
must settle ``failed`` with an error that names the problem (or, when even its
state is unreadable, be left alone and reported by ``get`` as a
``PayloadDecodeError``), and the worker must carry on: the healthy jobs queued
beside it, before and after, each run once and succeed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

import conveyor
from conveyor import JobState
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.core.specs import build_spec
from conveyor.core.storage import JobFilter, Storage
from tests.support import FAST_BACKOFF, Journal, running, settle, step, step_worker

STEP = step("x").DESCRIPTOR.full_name
NOT_A_JOB = "not a valid Conveyor job"
DOES_NOT_DECODE = f"does not decode as {STEP}"
SETTLE = 15.0


def nested(depth: int) -> Step:
    """A ``Step`` nested ``depth`` levels deep."""
    message = step("leaf")
    for _ in range(depth):
        message = step("n", children=[message])
    return message


async def run_beside(
    config: conveyor.Config,
    client: conveyor.AsyncClient,
    journal: Journal,
    plant: Callable[[], Awaitable[list[str]]],
    until: Callable[[list[str]], Awaitable[object]] | None = None,
) -> list[str]:
    """Run a worker over the planted jobs and healthy ones queued before and after
    them, and one more enqueued while it runs: the healthy jobs must each run once
    and succeed. ``until(planted_ids)`` is awaited before the worker stops (by
    default: until every planted job has settled). Returns the planted ids."""
    before = await client.enqueue(step("before"))
    planted = await plant()
    after = await client.enqueue(step("after"))
    async with running(step_worker(config, journal)):
        late = await client.enqueue(step("late"))
        for job in (before, after, late):
            assert (await settle(client, job.id, timeout=SETTLE)).state is JobState.SUCCEEDED
        if until is None:
            for job_id in planted:
                await settle(client, job_id, timeout=SETTLE)
        else:
            await until(planted)
    for name in ("before", "after", "late"):
        assert journal.count(name) == 1, name
    return planted


async def nothing(ids: list[str]) -> None:
    """Wait for nothing more: the planted jobs must not have run by now."""


async def settled(client: conveyor.AsyncClient, job_id: str) -> conveyor.Job:
    """The job, which must exist and have settled."""
    job = await client.get(job_id)
    assert job is not None
    assert job.state.settled, f"job {job_id} is {job.state}"
    return job


# --- (a) payloads that do not decode as their type, on every backend ----------------

# (tests/contract/test_bad_input.py has plain random bytes)
GARBAGE = {
    "field number 0": b"\x00",
    "varint of 11 bytes": b"\x08" + b"\x80" * 10 + b"\x01",
    "truncated": step("truncated", children=[step("kid")]).SerializeToString()[:-3],
    "invalid UTF-8 in a string": b"\x0a\x02\xff\xfe",
    "length beyond the end": b"\x0a\xff\xff\xff\xff\x0f",
    "stray end-group tag": b"\x0c",
}


@pytest.mark.parametrize("payload", GARBAGE.values(), ids=GARBAGE.keys())
async def test_payload_that_does_not_decode_fails_at_once(
    payload: bytes,
    config: conveyor.Config,
    client: conveyor.AsyncClient,
    journal: Journal,
    storage: Storage,
) -> None:
    async def plant() -> list[str]:
        garbage = replace(build_spec(config, step("garbage")), payload=payload)
        await storage.enqueue([garbage])
        return [garbage.id]

    [bad_id] = await run_beside(config, client, journal, plant)
    bad = await settled(client, bad_id)
    assert bad.state is JobState.FAILED
    assert bad.attempt == 1  # retrying cannot help
    assert DOES_NOT_DECODE in (bad.last_error or "")
    assert journal.count("garbage") == 0  # the handler never saw it
    with pytest.raises(conveyor.PayloadDecodeError):
        bad.payload()


async def test_payload_nested_deeper_than_protobuf_decodes_fails_at_once(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    """Enqueue accepts it (protobuf serializes it), but no worker can parse it back."""

    async def plant() -> list[str]:
        return [(await client.enqueue(nested(101))).id]

    [deep_id] = await run_beside(config, client, journal, plant)
    deep = await settled(client, deep_id)
    assert deep.state is JobState.FAILED
    assert deep.attempt == 1
    assert DOES_NOT_DECODE in (deep.last_error or "")


# --- (b) types no worker handles, on every backend ----------------------------------

ODD_TYPES = {
    "unknown": "no.such.v1.Type",
    "empty": "",
    "unicode": "ünï.cödé\u200b.Typ|e",
    "control characters": "a\x01b\x1b[31m",  # no NUL: PostgreSQL text refuses it at enqueue
    "very long": "t." + "x" * 5000,
}


@pytest.mark.parametrize("type_name", ODD_TYPES.values(), ids=ODD_TYPES.keys())
async def test_type_without_a_handler_fails_after_its_attempts(
    type_name: str,
    config: conveyor.Config,
    client: conveyor.AsyncClient,
    journal: Journal,
    storage: Storage,
) -> None:
    async def plant() -> list[str]:
        stray = replace(
            build_spec(config, step("stray"), max_attempts=2), type=type_name, queue=STEP
        )
        await storage.enqueue([stray])
        return [stray.id]

    [stray_id] = await run_beside(config, client, journal, plant)
    stray = await settled(client, stray_id)
    assert stray.state is JobState.FAILED
    assert stray.type == type_name
    assert stray.attempt == 2
    assert "no handler for type" in (stray.last_error or "")
    assert journal.count("stray") == 0


# --- payload text that breaks storing the error, on every backend ----------------------


async def test_failure_whose_error_text_holds_nul_is_stored(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    """The handler echoes a payload string with NUL in its error (PostgreSQL text
    refuses NUL): the job still fails for good, and the outcomes reported with
    it are not held up."""

    async def plant() -> list[str]:
        return [(await client.enqueue(step("nul\x00here", fail=True), max_attempts=2)).id]

    [bad_id] = await run_beside(config, client, journal, plant)
    bad = await settled(client, bad_id)
    assert bad.state is JobState.FAILED
    assert bad.attempt == 2
    assert "step nul" in (bad.last_error or "")
    assert "here fails on attempt 2" in (bad.last_error or "")
    assert journal.count("nul\x00here") == 2


# --- (c) fields garbled in place: Redis hashes -------------------------------------------


@dataclass(frozen=True)
class Garble:
    """Changes to the planted job's hash (``None`` deletes a field), and what must follow."""

    changes: dict[str, bytes | None]
    error: str | None  # in last_error once it failed; None: it must not fail
    runs: bool = False  # a harmless change: the job runs and succeeds
    delete: bool = False  # the whole hash


LONG_NAME = "broken" + "x" * 200  # a payload stored in 64-byte pieces: p, p1, p2, p3

REDIS_GARBLES = {
    "no type": Garble({"t": None}, NOT_A_JOB),
    "attempt not a number": Garble({"a": b"x"}, NOT_A_JOB),
    # Numbers to Lua's tonumber, not to Redis's integer commands or Python's int().
    "attempt in hex": Garble({"a": b"0x10"}, NOT_A_JOB),
    "attempt a fraction": Garble({"a": b"1.5"}, NOT_A_JOB),
    "attempt infinite": Garble({"a": b"inf"}, NOT_A_JOB),
    "attempt padded": Garble({"a": b" 1"}, NOT_A_JOB),
    "max_attempts not a number": Garble({"m": b"x"}, NOT_A_JOB),
    "priority not a number": Garble({"pr": b"x"}, NOT_A_JOB),
    "timeout not a number": Garble({"to": b"soon"}, NOT_A_JOB),
    "headers not JSON": Garble({"h": b"{"}, NOT_A_JOB),
    "headers not an object": Garble({"h": b"[1,2]"}, NOT_A_JOB),
    "headers not strings": Garble({"h": b'{"k":1}'}, NOT_A_JOB),
    "heir condition unknown": Garble({"w": b"bogus"}, NOT_A_JOB),
    "type not UTF-8": Garble({"t": b"\xff\xfe"}, NOT_A_JOB),
    "queue not UTF-8": Garble({"q": b"\xff\xfe"}, NOT_A_JOB),
    "payload replaced": Garble({"p": b"\xff\xff", "p1": None}, DOES_NOT_DECODE),
    "payload piece garbled": Garble({"p2": b"\xff" * 64}, DOES_NOT_DECODE),
    "payload piece missing": Garble({"p1": None}, DOES_NOT_DECODE),
    "unknown extra field": Garble({"zz": b"1"}, None, runs=True),
    "state unknown": Garble({"s": b"zz"}, None),
    "state missing": Garble({"s": None}, None),
    "hash deleted": Garble({}, None, delete=True),
}


@pytest.fixture
def redis_config(redis_url: str, namespace: str) -> conveyor.Config:
    return conveyor.Config(url=redis_url, namespace=namespace, backoff=FAST_BACKOFF)


@pytest.fixture
async def raw_redis(redis_config: conveyor.Config) -> AsyncIterator[aioredis.Redis]:
    raw = aioredis.Redis.from_url(redis_config.url)
    yield raw
    await raw.aclose()


async def wait_raw(read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> Any:
    """Poll a raw read until ``done`` holds (bounded), returning the last value."""
    deadline = time.monotonic() + SETTLE
    while True:
        value = await read()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


async def readable(client: conveyor.AsyncClient, storage: Storage, job_id: str) -> None:
    """Inspection copes with the garbled job: typed errors only, and stats always work."""
    try:
        await client.get(job_id)
    except conveyor.PayloadDecodeError as exc:
        assert NOT_A_JOB in str(exc)
    try:
        await storage.list_jobs(JobFilter())
    except conveyor.PayloadDecodeError as exc:
        assert NOT_A_JOB in str(exc)
    stats = await storage.queue_stats()
    assert any(s.queue == STEP for s in stats)


@pytest.mark.redis
@pytest.mark.parametrize("garble", REDIS_GARBLES.values(), ids=REDIS_GARBLES.keys())
async def test_garbled_redis_hash_fails_alone(
    garble: Garble, redis_config: conveyor.Config, raw_redis: aioredis.Redis
) -> None:
    journal = Journal()
    prefix = "{" + redis_config.namespace + "}:"

    async with conveyor.AsyncClient(redis_config) as client:
        storage = await client.storage()

        async def plant() -> list[str]:
            job = await client.enqueue(step(LONG_NAME), max_attempts=2)
            key = f"{prefix}job:{job.id}"
            if garble.delete:
                await raw_redis.delete(key)
            for field_name, value in garble.changes.items():
                if value is None:
                    await raw_redis.hdel(key, field_name)
                else:
                    await raw_redis.hset(key, field_name, value)
            return [job.id]

        async def failed(ids: list[str]) -> object:
            key = f"{prefix}job:{ids[0]}"
            return await wait_raw(lambda: raw_redis.hget(key, "s"), lambda state: state == b"f")

        until = failed if garble.error is not None else None if garble.runs else nothing
        [job_id] = await run_beside(redis_config, client, journal, plant, until)
        state, error = await raw_redis.hmget(f"{prefix}job:{job_id}", "s", "e")
        if garble.error is not None:
            assert state == b"f", f"the job is {state!r}, not failed"
            assert garble.error in error.decode(errors="replace")
            assert journal.count(LONG_NAME) == 0
        elif garble.runs:
            job = await settled(client, job_id)
            assert job.state is JobState.SUCCEEDED
            assert journal.count(LONG_NAME) == 1
        else:  # unreadable state or no job: left alone, never run
            assert journal.count(LONG_NAME) == 0
            assert state == garble.changes.get("s")
        await readable(client, storage, job_id)


# --- (c) fields garbled in place: SQL rows ------------------------------------------------

SQL_GARBLES = {
    "headers not an object": ("headers", "[1, 2]"),
    "headers a string": ("headers", '"x"'),
    "headers not strings": ("headers", '{"k": 1}'),
    "heir condition unknown": ("heir_when", "bogus"),
    "predecessor state unknown": ("predecessor_state", "zz"),
    "run_at not a number": ("run_at", "NaN"),
    "payload garbled": ("payload", b"\xff\xff\xff"),
}


SQL_BACKENDS = [
    pytest.param(n, marks=getattr(pytest.mark, n), id=n) for n in ("sqlite", "postgres")
]


@pytest.fixture(params=SQL_BACKENDS)
def sql_config(request: pytest.FixtureRequest, namespace: str) -> conveyor.Config:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return conveyor.Config(url=url, namespace=namespace, backoff=FAST_BACKOFF)


def sql_execute(config: conveyor.Config, statement: str, params: tuple[Any, ...]) -> Any:
    """Run one statement on the namespace's jobs table with the plain driver."""
    if config.scheme == "sqlite":
        table = f'"{config.namespace}_jobs"'
        with sqlite3.connect(config.url.removeprefix("sqlite:///")) as conn:
            return conn.execute(statement.format(jobs=table), params).fetchone()
    table = f'"{config.namespace}".jobs'
    dsn = config.url.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement.format(jobs=table).replace("?", "%s"), params)
        return cursor.fetchone() if cursor.description is not None else None


@pytest.mark.parametrize(("column", "value"), SQL_GARBLES.values(), ids=SQL_GARBLES.keys())
async def test_garbled_sql_row_fails_alone(
    column: str, value: str | bytes, sql_config: conveyor.Config
) -> None:
    journal = Journal()
    async with conveyor.AsyncClient(sql_config) as client:
        storage = await client.storage()

        async def plant() -> list[str]:
            job = await client.enqueue(step("broken"), max_attempts=2)
            sql_execute(
                sql_config, f"UPDATE {{jobs}} SET {column} = ? WHERE id = ?", (value, job.id)
            )
            return [job.id]

        def read(job_id: str) -> Any:
            return sql_execute(
                sql_config, "SELECT state, attempt, last_error FROM {jobs} WHERE id = ?", (job_id,)
            )

        async def failed(ids: list[str]) -> object:
            return await wait_raw(
                lambda: asyncio.to_thread(read, ids[0]), lambda r: r[0] == "failed"
            )

        [job_id] = await run_beside(sql_config, client, journal, plant, failed)
        state, attempt, error = read(job_id)
        assert state == "failed"
        assert attempt == 1
        expected = DOES_NOT_DECODE if column == "payload" else NOT_A_JOB
        assert expected in (error or "")
        assert journal.count("broken") == 0
        await readable(client, storage, job_id)


async def test_sql_row_in_an_unknown_state_is_left_alone(sql_config: conveyor.Config) -> None:
    journal = Journal()
    async with conveyor.AsyncClient(sql_config) as client:
        storage = await client.storage()

        async def plant() -> list[str]:
            job = await client.enqueue(step("broken"))
            sql_execute(sql_config, "UPDATE {jobs} SET state = ? WHERE id = ?", ("bogus", job.id))
            return [job.id]

        [job_id] = await run_beside(sql_config, client, journal, plant, nothing)
        assert journal.count("broken") == 0
        row = sql_execute(sql_config, "SELECT state FROM {jobs} WHERE id = ?", (job_id,))
        assert row == ("bogus",)
        with pytest.raises(conveyor.PayloadDecodeError, match=NOT_A_JOB):
            await client.get(job_id)
        await readable(client, storage, job_id)
