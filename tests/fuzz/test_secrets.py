"""Passwords in storage URLs never show: not in errors, reprs, logs or command output.

Servers that are down, a Redis that refuses the password, a Redis without a
password given one, PostgreSQL refusing the user, and malformed URLs whose
password holds the characters that end a URL's host part. Every exception is
checked with its whole chain, as a traceback in a log would show it, and every
log record down to DEBUG, from Conveyor and from the drivers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.cli import main
from conveyor.core.config import mask_url
from tests.cli.conftest import _restore_logging  # noqa: F401 (autouse: the CLI sets up logging)
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.redis.conftest import PrivateRedis, free_port
from tests.support import running, settle

SECRET = "s3cret"
DOWN = free_port()  # nothing listens there
REDIS_HOST = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
POSTGRES_HOST = POSTGRES_URL.split("@", 1)[1].split("/", 1)[0]


def pieces(password: str) -> list[str]:
    """What must not show of a password: itself, and each run of it between the
    characters that can end a URL's user part, when long enough to mean something."""
    return [p for p in {password, *re.split(r"[@/?#:]", password)} if len(p) >= 3]


def assert_hidden(text: str, password: str = SECRET) -> None:
    for piece in pieces(password):
        assert piece not in text, f"{piece!r} shows in: {text!r}"


def everything_about(exc: BaseException) -> str:
    """The exception as a log shows it: message, repr, and the traceback of its whole chain."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.extend(traceback.format_exception(*record.exc_info))
    return "\n".join([caplog.text, *lines])


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def strict_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server that wants a password other than ``SECRET``."""
    server = PrivateRedis(tmp_path, "--requirepass", "the-right-one")
    server.start()
    yield server
    server.stop()


# (url, password in it, what connecting must raise: None means it connects)
Case = tuple[str, str, type[conveyor.ConveyorError] | None]

UNREACHABLE: dict[str, Case] = {
    "redis down": (f"redis://:{SECRET}@127.0.0.1:{DOWN}/0", SECRET, conveyor.BackendUnavailable),
    "redis user down": (
        f"redis://default:{SECRET}@127.0.0.1:{DOWN}/0",
        SECRET,
        conveyor.BackendUnavailable,
    ),
    "postgres down": (
        f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{DOWN}/test",
        SECRET,
        conveyor.BackendUnavailable,
    ),
    "postgres unknown role": (
        f"postgresql+psycopg://nobody_here:{SECRET}@{POSTGRES_HOST}/test",
        SECRET,
        conveyor.BackendUnavailable,
    ),
    "redis port not a number": (
        f"redis://:{SECRET}@127.0.0.1:notaport/0",
        SECRET,
        conveyor.ConfigurationError,
    ),
    "postgres port not a number": (
        f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:notaport/test",
        SECRET,
        conveyor.ConfigurationError,
    ),
    "redis password with '/'": (
        f"redis://:Ab3D/ef{SECRET}@127.0.0.1:{DOWN}/0",
        f"Ab3D/ef{SECRET}",
        conveyor.ConfigurationError,
    ),
    "redis password with '#'": (
        f"redis://:Ab3D#ef{SECRET}@127.0.0.1:{DOWN}/0",
        f"Ab3D#ef{SECRET}",
        conveyor.ConfigurationError,
    ),
    "redis user and password with '?'": (
        f"redis://me:Ab3D?ef{SECRET}@127.0.0.1:{DOWN}/0",
        f"Ab3D?ef{SECRET}",
        conveyor.ConfigurationError,
    ),
    "postgres password with '@'": (
        f"postgresql+psycopg://postgres:{SECRET}@xyz@127.0.0.1:{DOWN}/test",
        f"{SECRET}@xyz",
        conveyor.ConfigurationError,
    ),
    "postgres password with '/' and '#'": (
        f"postgresql+psycopg://postgres:Ab3D/e#f{SECRET}@127.0.0.1:{DOWN}/test",
        f"Ab3D/e#f{SECRET}",
        conveyor.BackendUnavailable,
    ),
}


async def connect_everything(config: conveyor.Config) -> list[BaseException]:
    """Connect a client, a worker and the sync client; what each raised."""
    raised: list[BaseException] = []
    try:
        async with conveyor.AsyncClient(config) as client:
            await client.get("00000000-0000-7000-8000-000000000000")
    except conveyor.ConveyorError as exc:
        raised.append(exc)

    worker = conveyor.Worker(config, claim_wait=0.05, shutdown_timeout=1.0)

    @worker.handler
    async def noop(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        pass

    task = asyncio.create_task(worker.run())
    done, _ = await asyncio.wait({task}, timeout=0.5)
    if not done:
        await worker.stop()
    try:
        await asyncio.wait_for(task, timeout=30)
    except conveyor.ConveyorError as exc:
        raised.append(exc)

    def sync() -> None:
        try:
            with conveyor.Client(config) as client:
                client.get("00000000-0000-7000-8000-000000000000")
        except conveyor.ConveyorError as exc:
            raised.append(exc)

    await asyncio.to_thread(sync)
    return raised


@pytest.mark.parametrize("case", UNREACHABLE.values(), ids=UNREACHABLE.keys())
async def test_connection_errors_and_logs_hide_the_password(
    case: Case, debug_logs: pytest.LogCaptureFixture
) -> None:
    url, password, expected = case
    config = conveyor.Config(url=url, namespace="t_secrets")
    assert_hidden(repr(config), password)
    assert_hidden(str(config), password)
    raised = await connect_everything(config)
    assert len(raised) == 3, raised  # the client, the worker and the sync client
    for exc in raised:
        assert expected is not None
        assert isinstance(exc, expected), repr(exc)
        assert "***" in str(exc), "the error should name the (masked) URL"
        assert_hidden(everything_about(exc), password)
    assert_hidden(logged(debug_logs), password)


@pytest.mark.redis
async def test_redis_that_refuses_the_password(
    strict_redis: PrivateRedis, debug_logs: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{strict_redis.port}/0"
    raised = await connect_everything(conveyor.Config(url=url, namespace="t_secrets"))
    assert len(raised) == 3, raised
    for exc in raised:
        assert isinstance(exc, conveyor.BackendError), repr(exc)
        assert f"127.0.0.1:{strict_redis.port}" in str(exc)
        assert_hidden(everything_about(exc))
    assert_hidden(logged(debug_logs))


@pytest.mark.redis
async def test_redis_without_a_password_given_one(
    redis_url: str, namespace: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    """The shared server has no password: redis-py's AUTH is refused, and it goes on
    without one. Conveyor connects and works; the password shows nowhere."""
    url = redis_url.replace("redis://", f"redis://:{SECRET}@")
    config = conveyor.Config(url=url, namespace=namespace)
    async with conveyor.AsyncClient(config) as client:
        job = await client.enqueue(BasicJob(name="hello"))
        found = await client.get(job.id)
        assert found is not None and found.state is conveyor.JobState.QUEUED
    assert await connect_everything(config) == []
    assert_hidden(logged(debug_logs))


@pytest.mark.memory
async def test_worker_that_could_not_connect_runs_once_the_url_is_fixed(
    memory_url: str, namespace: str
) -> None:
    """Found here: a worker whose first run() failed to connect said "this worker is
    already running" on every later run() (the CLI's worker command reuses the
    Worker object of the user's module)."""
    config = conveyor.Config(url=f"redis://:{SECRET}@127.0.0.1:{DOWN}/0", namespace=namespace)
    worker = conveyor.Worker(config, claim_wait=0.05)
    ran: list[str] = []

    @worker.handler
    async def record(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        ran.append(msg.name)

    with pytest.raises(conveyor.BackendUnavailable):
        await worker.run()
    worker.config = replace(config, url=memory_url)
    async with conveyor.AsyncClient(worker.config) as client, running(worker):
        job = await client.enqueue(BasicJob(name="after the fix"))
        assert (await settle(client, job.id)).state is conveyor.JobState.SUCCEEDED
    assert ran == ["after the fix"]


# --- the command line ---------------------------------------------------------------------

CLI_URLS: dict[str, tuple[str, str]] = {  # the URL, and the password in it
    "redis down": (f"redis://:{SECRET}@127.0.0.1:{DOWN}/0", SECRET),
    "postgres down": (f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{DOWN}/test", SECRET),
    "redis password with '/'": (f"redis://:Ab3D/ef{SECRET}@127.0.0.1:{DOWN}/0", f"Ab3D/ef{SECRET}"),
    "not a URL": (f"postgres:{SECRET}@127.0.0.1:{DOWN}/test", SECRET),
    "a slash short": (f"redis:/:{SECRET}@xyz@127.0.0.1:{DOWN}/0", f"{SECRET}@xyz"),
}
COMMANDS = {
    "stats": ["stats"],
    "migrate": ["migrate"],
    "enqueue": ["enqueue", "conveyor.examples.BasicJob", "--json", "{}"],
    "worker": ["worker", "tests.cli.app:worker", "--log-level", "debug"],
    "worker processes": ["worker", "tests.cli.app:worker", "--processes", "2"],
}


@pytest.mark.parametrize(("url", "password"), CLI_URLS.values(), ids=CLI_URLS.keys())
@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_command_line_hides_the_password(url: str, password: str, command: list[str]) -> None:
    runner = CliRunner()
    for result in (
        runner.invoke(main, [*command, "--url", url]),
        runner.invoke(main, command, env={"CONVEYOR_URL": url}),
    ):
        assert result.exit_code in (1, 2), result.output
        assert "Traceback" not in result.output
        assert result.output.startswith("Error:") or "Error:" in result.output
        assert_hidden(result.output, password)
        assert_hidden(result.stderr, password)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            assert_hidden(everything_about(result.exception), password)


# --- mask_url on any password -------------------------------------------------------------

MARK = "Zq"  # begins and ends every run of a generated password: it shows nowhere else
DELIMITERS = "@/?#:"
runs = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=[*DELIMITERS, "Z"]),
    max_size=6,
).map(lambda text: f"{MARK}{text}{MARK}")


@st.composite
def passwords(draw: st.DrawFn) -> str:
    """Printable ASCII, with the characters that end a URL's user part among marked runs."""
    parts = [draw(runs)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(st.text(st.sampled_from(DELIMITERS), min_size=1, max_size=3)), draw(runs)]
    return "".join(parts)


shapes = st.sampled_from(
    [
        "{scheme}://:{pw}@127.0.0.1:6379/0",
        "{scheme}://user:{pw}@127.0.0.1:6379/0",
        "{scheme}://user:{pw}@127.0.0.1:6379/0?x=1#frag",
        "{scheme}:/:{pw}@127.0.0.1:6379/0",
        "{scheme}:user:{pw}@127.0.0.1",
        "{scheme}///user:{pw}@127.0.0.1",
        "user:{pw}@127.0.0.1:5432/app",
        ":{pw}@127.0.0.1",
    ]
)
schemes = st.sampled_from(["redis", "rediss", "postgresql+psycopg", "postgresql", "unix", "x"])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(password=passwords(), shape=shapes, scheme=schemes)
def test_mask_url_hides_any_password(password: str, shape: str, scheme: str) -> None:
    url = shape.format(scheme=scheme, pw=password)
    assert MARK not in mask_url(url)
    try:
        config = conveyor.Config(url=url)
    except conveyor.ConfigurationError as exc:
        assert MARK not in everything_about(exc)
    else:
        assert MARK not in repr(config)
        assert MARK not in str(config)
