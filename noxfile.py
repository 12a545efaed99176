"""Developer and CI sessions: ``nox -s tests lint typecheck``; ``nox -s protos`` regenerates code.

``nox -s tests -- -m memory`` (or ``redis``, ``postgres``, ``sqlite``) runs one backend.
``nox -s demo`` runs ``conveyor demo`` (a live family of jobs, with the admin) on embedded SQLite.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite against real Redis and PostgreSQL (a missing server fails it)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def protos(session: nox.Session) -> None:
    """Regenerate conveyor/_proto from protos/ (grpcio-tools + mypy-protobuf, pinned)."""
    session.install("-e", ".[dev]")
    session.run("python", "tools/genprotos.py")


@nox.session(python=PYTHON)
def generate(session: nox.Session) -> None:
    """Regenerate the Redis scripts' lua/constants.lua from conveyor/core/rules.py and
    conveyor/backends/redis/layout.py."""
    session.install("-e", ".[redis]")
    session.run("python", "tools/genlua.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: Conveyor on Redis (127.0.0.1:6379/14) and PostgreSQL (127.0.0.1:5432/test)
    against raw baselines and seven peers (each in its own uv virtualenv under .bench/),
    3 interleaved rounds, about 14 minutes; writes bench/RESULTS.md. See bench/README.md.
    Not run by default.

    ``nox -s bench -- --backends postgres --runs 1 --workloads w1`` passes options to
    ``python -m bench.run``.
    """
    session.install("-e", ".[dev]", "uv")  # uv makes the peers' virtualenvs
    session.run("python", "-m", "bench.run", *(session.posargs or ["--commandstats"]))


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """The long chaos and soak runs (CI runs short ones inside ``tests``): 10 minutes of
    worker kills and of server faults on each backend, 200,000 jobs of soak. Figures go
    to test-output/chaos/ and test-output/soak/; see tests/chaos/README.md."""
    session.install("-e", ".[dev]")
    env = {
        "CHAOS_SECONDS": "600",
        "CHAOS_FAULT_SECONDS": "600",
        "CHAOS_REPAIR_SECONDS": "300",
        "SOAK_JOBS": "200000",
    }
    session.run("pytest", "-p", "no:cacheprovider", "-s", "tests/chaos", "tests/soak",
                *session.posargs, env=env)  # fmt: skip


@nox.session
def demo(session: nox.Session) -> None:
    """``conveyor demo``: a live family of jobs and the admin, on embedded SQLite; needs no server.

    Options go after ``--``: ``nox -s demo -- --serve`` keeps the admin up until Ctrl+C,
    ``nox -s demo -- --url redis://localhost:6379/0`` runs it on Redis. Any Python >= 3.11.
    """
    session.install("-e", ".[all]")
    session.run("conveyor", "demo", *session.posargs)
