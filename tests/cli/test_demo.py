"""``conveyor demo`` and ``conveyor admin``: a live family, and the admin on a real port."""

from __future__ import annotations

import base64
import re
import signal
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from conveyor.cli import main

from .procs import child_env, spawn

URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/)")


def _status(url: str, auth: tuple[str, str] | None = None) -> int:
    """The HTTP status of GET ``url`` (any status: the server answered)."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def _check_settled(output: str) -> None:
    assert "Traceback" not in output, output
    assert URL_LINE.search(output), output
    assert "The family settled" in output, output
    assert "1 retry, order succeeded" in output, output
    assert "Summary (the heir, written after everything else): order ord-" in output, output


@pytest.mark.sqlite
def test_demo_on_the_embedded_default() -> None:
    result = CliRunner().invoke(
        main, ["demo", "--fast", "--port", "0", "--seed", "7"], env={"CONVEYOR_URL": None}
    )
    assert result.exit_code == 0, result.output
    _check_settled(result.output)
    assert "sqlite:///" in result.output and "conveyor-demo-" in result.output


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(name, marks=getattr(pytest.mark, name))
        for name in ("memory", "redis", "postgres")
    ],
)
def test_demo_on_a_given_url(request: pytest.FixtureRequest, backend: str, namespace: str) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    result = CliRunner().invoke(
        main,
        ["demo", "--fast", "--port", "0", "--lines", "20", "--url", url, "--namespace", namespace],
    )
    assert result.exit_code == 0, result.output
    _check_settled(result.output)
    assert f"namespace {namespace!r}" in result.output
    assert "20 line items" in result.output


@pytest.mark.sqlite
def test_demo_serve_keeps_the_admin_up_until_sigterm(sqlite_url: str) -> None:
    args = ["-m", "conveyor", "demo", "--fast", "--serve", "--port", "0", "--lines", "20"]
    with spawn(args, child_env(sqlite_url)) as (demo, output):
        admin_url = URL_LINE.search(output.wait_for("Serving the admin at", timeout=60))
        assert admin_url is not None
        assert _status(admin_url.group(1)) < 500
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0, output.text()
    _check_settled(output.text())


@pytest.mark.sqlite
def test_admin_serves_on_its_port_with_basic_auth(sqlite_url: str) -> None:
    args = ["-m", "conveyor", "admin", "--port", "0", "--log-level", "warning"]
    env = child_env(sqlite_url, CONVEYOR_ADMIN_USERNAME="ann", CONVEYOR_ADMIN_PASSWORD="s3cret")
    with spawn(args, env) as (admin, output):
        admin_url = URL_LINE.search(output.wait_for("Conveyor admin at", timeout=60))
        assert admin_url is not None
        assert _status(admin_url.group(1)) == 401
        assert _status(admin_url.group(1), auth=("ann", "s3cret")) < 500
        admin.send_signal(signal.SIGINT)
        assert admin.wait(timeout=30) == 0, output.text()
    assert "Traceback" not in output.text()
    assert "s3cret" not in output.text()
