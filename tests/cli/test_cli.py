"""The command line through click's CliRunner: exit codes, messages, output."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.cli import main
from conveyor.core.backend_registry import open_storage
from conveyor.core.type_registry import descriptor_set

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos" / "examples"


@pytest.fixture
def sqlite_cli_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_help_on_every_command() -> None:
    runner = CliRunner()
    commands = (
        *([], ["worker"], ["admin"], ["demo"], ["enqueue"], ["migrate"], ["stats"]),
        *(["job", "show"], ["job", "cancel"], ["job", "retry"], ["queue", "purge"], ["health"]),
    )
    for command in commands:
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_migrate_then_stats_on_sqlite(sqlite_cli_url: str) -> None:
    runner = CliRunner()
    migrated = runner.invoke(main, ["migrate", "--url", sqlite_cli_url])
    assert migrated.exit_code == 0, migrated.output
    assert "schema ready" in migrated.output
    stats = runner.invoke(main, ["stats", "--url", sqlite_cli_url, "--minutes", "2"])
    assert stats.exit_code == 0, stats.output
    assert "workers: 0" in stats.output
    assert "succeeded" in stats.output


def test_url_comes_from_the_environment(sqlite_cli_url: str) -> None:
    result = CliRunner().invoke(main, ["migrate"], env={"CONVEYOR_URL": sqlite_cli_url})
    assert result.exit_code == 0, result.output


def test_unknown_scheme_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["stats", "--url", "mysql://x/y"])
    assert result.exit_code == 2
    assert "no backend" in result.output
    assert "Traceback" not in result.output


def test_server_down_is_a_runtime_error_without_the_password() -> None:
    result = CliRunner().invoke(main, ["stats", "--url", "redis://:hunter2@127.0.0.1:1/0"])
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:worker", "cannot import"),
        ("tests.cli.app:not_a_worker", "not a conveyor.Worker"),
        ("tests.cli.app", "MODULE:ATTR"),
    ],
)
def test_bad_worker_target_is_a_usage_error(target: str, message: str) -> None:
    result = CliRunner().invoke(main, ["worker", target, "--url", "memory://cli"])
    assert result.exit_code == 2
    assert message in result.output


def test_enqueue_by_type_name_with_json(sqlite_cli_url: str) -> None:

    config = conveyor.Config(url=sqlite_cli_url)

    async def publish() -> None:
        storage = await open_storage(config)
        await storage.publish_types({"conveyor.examples.BasicJob": descriptor_set(BasicJob)})
        await storage.aclose()

    asyncio.run(publish())
    runner = CliRunner()
    ok = runner.invoke(
        main,
        [
            "enqueue",
            "conveyor.examples.BasicJob",
            "--json",
            '{"name": "bob", "count": 3}',
            "--url",
            sqlite_cli_url,
        ],
    )
    assert ok.exit_code == 0, ok.output
    job_id = ok.output.strip()

    async def fetch() -> conveyor.Job | None:
        async with conveyor.AsyncClient(config) as client:
            return await client.get(job_id)

    job = asyncio.run(fetch())
    assert job is not None
    assert job.payload() == BasicJob(name="bob", count=3)
    bad = runner.invoke(
        main,
        ["enqueue", "conveyor.examples.BasicJob", "--json", '{"nope": 1}', "--url", sqlite_cli_url],
    )
    assert bad.exit_code == 1
    assert "does not match" in bad.output
    unknown = runner.invoke(
        main, ["enqueue", "acme.Missing", "--json", "{}", "--url", sqlite_cli_url]
    )
    assert unknown.exit_code == 1
    assert "no message 'acme.Missing' in the descriptors published" in unknown.output


def test_enqueue_with_a_proto_path_needs_no_published_descriptors(sqlite_cli_url: str) -> None:
    runner = CliRunner()
    for path in (PROTOS, PROTOS / "basic.proto"):
        ok = runner.invoke(
            main,
            [
                *("enqueue", "conveyor.examples.BasicJob", "--json", '{"name": "ann", "count": 2}'),
                *("--url", sqlite_cli_url, "--proto-path", str(path), "--priority", "3"),
            ],
        )
        assert ok.exit_code == 0, ok.output
        with conveyor.Client(conveyor.Config(url=sqlite_cli_url)) as client:
            job = client.get(ok.output.strip())
        assert job is not None
        assert job.payload() == BasicJob(name="ann", count=2)
        assert job.priority == 3
    from_stdin = runner.invoke(
        main,
        [
            *("enqueue", "conveyor.examples.Order", "--json", "-", "--url", sqlite_cli_url),
            *("--proto-path", str(PROTOS)),
        ],
        input='{"order_id": "o-1", "items": [{"sku": "mug", "quantity": 2}]}',
    )
    assert from_stdin.exit_code == 0, from_stdin.output
    missing = runner.invoke(
        main,
        [
            *("enqueue", "conveyor.examples.Nope", "--json", "{}", "--url", sqlite_cli_url),
            *("--proto-path", str(PROTOS)),
        ],
    )
    assert missing.exit_code == 1
    assert "no message 'conveyor.examples.Nope' in the given --proto-path" in missing.output


def test_enqueue_with_a_proto_path_that_does_not_compile(
    tmp_path: Path, sqlite_cli_url: str
) -> None:
    (tmp_path / "broken.proto").write_text('syntax = "proto3";\nmessage {\n')
    result = CliRunner().invoke(
        main,
        ["enqueue", "a.B", "--json", "{}", "--url", sqlite_cli_url, "--proto-path", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "protoc could not compile" in result.output
    assert "Traceback" not in result.output


def test_stats_table_and_json(sqlite_cli_url: str) -> None:
    config = conveyor.Config(url=sqlite_cli_url)
    with conveyor.Client(config) as client:
        client.enqueue_many([BasicJob(name="x") for _ in range(3)])
    runner = CliRunner()
    table = runner.invoke(main, ["stats", "--url", sqlite_cli_url])
    assert table.exit_code == 0, table.output
    header, row = table.output.splitlines()[:2]
    assert header.split() == [
        "queue",
        *(s.value for s in conveyor.JobState),
        "ok/min",
        "retry/min",
        "fail/min",
        "wait",
        "(s)",
    ]
    assert row.split()[:4] == ["conveyor.examples.BasicJob", "0", "0", "3"]
    assert 0 <= float(row.split()[-1]) < 60  # the longest-waiting job's wait, in seconds
    as_json = runner.invoke(main, ["stats", "--url", sqlite_cli_url, "--json", "--minutes", "3"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["queues"][0]["queue"] == "conveyor.examples.BasicJob"
    assert report["queues"][0]["counts"]["queued"] == 3
    assert set(report["queues"][0]["per_minute"]) == {"succeeded", "retried", "failed"}
    assert 0 <= report["queues"][0]["longest_wait"] < 60
    assert len(report["minutes"]) == 3
    assert report["workers"] == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["migrate", "--url", "nonsense"], 2, "is not a URL"),
        (["migrate", "--url", "memory://", "--namespace", "Bad-Name"], 2, "namespace"),
        (["worker", "tests.cli.app:worker", "--url", "nonsense"], 2, "is not a URL"),
        (["worker", "tests.cli.app:worker", "--log-level", "loud"], 2, "unknown log level"),
        (["worker", "tests.cli.broken:worker"], 1, "raised ZeroDivisionError"),
        (["admin", "--url", "memory://", "--username", "ann"], 2, "both a username and a password"),
        (["admin", "--url", "mysql://x/y"], 2, "no backend"),
        (["admin", "--url", "redis://127.0.0.1:1/0", "--port", "0"], 1, "unreachable"),
        (["demo", "--url", "mysql://x/y"], 2, "no backend"),
        (["demo", "--url", "redis://127.0.0.1:1/0", "--port", "0"], 1, "unreachable"),
        (["enqueue", "a.B", "--json", "{}", "--url", "redis://127.0.0.1:1/0"], 1, "unreachable"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output


def test_enqueue_json_that_is_not_json(sqlite_cli_url: str) -> None:
    async def publish() -> None:
        storage = await open_storage(conveyor.Config(url=sqlite_cli_url))
        await storage.publish_types({"conveyor.examples.BasicJob": descriptor_set(BasicJob)})
        await storage.aclose()

    asyncio.run(publish())
    result = CliRunner().invoke(
        main, ["enqueue", "conveyor.examples.BasicJob", "--json", "{name:", "--url", sqlite_cli_url]
    )
    assert result.exit_code == 1
    assert "does not match conveyor.examples.BasicJob" in result.output


def test_queue_pause_resume_and_limit(sqlite_cli_url: str) -> None:
    config = conveyor.Config(url=sqlite_cli_url)
    with conveyor.Client(config) as client:
        client.enqueue(BasicJob(name="x"), queue="mail")
    runner = CliRunner()
    url = ["--url", sqlite_cli_url]
    paused = runner.invoke(main, ["queue", "pause", "mail", *url])
    assert (paused.exit_code, paused.output) == (0, "queue 'mail' paused\n")
    limited = runner.invoke(
        main, ["queue", "limit", "mail", *url, "--max-running", "3", "--rate", "10", "--per", "2"]
    )
    assert (limited.exit_code, limited.output) == (0, "queue 'mail': max 3 running, 10 per 2s\n")
    table = runner.invoke(main, ["stats", *url])
    assert "  mail: paused; max 3 running, 10 per 2s" in table.output.splitlines()
    report = json.loads(runner.invoke(main, ["stats", *url, "--json"]).output)
    assert report["controls"] == [
        {"queue": "mail", "paused": True, "limits": "max 3 running, 10 per 2s"}
    ]
    resumed = runner.invoke(main, ["queue", "resume", "mail", *url])
    assert (resumed.exit_code, resumed.output) == (0, "queue 'mail' resumed\n")
    cleared = runner.invoke(main, ["queue", "limit", "mail", *url])
    assert cleared.output == "queue 'mail': no limits\n"
    with conveyor.Client(config) as client:
        assert client.queue_controls() == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["queue", "pause", "nowhere"], 1, "no queue named 'nowhere'"),
        (["queue", "limit", "mail", "--max-running", "-1"], 2, "max_running must be a positive"),
        (["queue", "limit", "mail", "--rate", "5", "--per", "0"], 2, "rate period must be over 0"),
    ],
)
def test_bad_queue_commands_say_what_is_wrong(
    sqlite_cli_url: str, args: list[str], code: int, message: str
) -> None:
    result = CliRunner().invoke(main, [*args, "--url", sqlite_cli_url])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    with conveyor.Client(conveyor.Config(url=sqlite_cli_url)) as client:
        assert client.queue_controls() == []
