"""Developer and CI sessions: ``nox -s tests lint typecheck``; ``nox -s protos`` regenerates code.
``nox -s cluster`` and ``nox -s pgbouncer`` run the contract suites on a local Redis Cluster
and through a local PgBouncer, starting them.

``nox -s tests -- -m memory`` (or ``redis``, ``postgres``, ``sqlite``) runs one backend.
``nox -s demo`` runs ``conveyor demo`` (a live family of jobs, with the admin) on embedded SQLite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "package", "docs"]

PYTHON = "3.11"
PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_dev(session: nox.Session, *more: str) -> None:
    """The package with every extra, editable, and the ``dev`` dependency group."""
    session.install("-e", ".[all]", *nox.project.dependency_groups(PYPROJECT, "dev"), *more)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite against real Redis and PostgreSQL (a missing server fails it)."""
    install_dev(session)
    session.run("pytest", *session.posargs)


#: What the server sessions run: the suites every backend must pass, on that server.
SERVER_SUITES = ("tests/contract", "tests/property")


@nox.session(python=PYTHON)
def cluster(session: nox.Session) -> None:
    """The contract and property suites, and master-failover chaos runs, on a local Redis
    Cluster: 3 masters and 3 replicas on 127.0.0.1:7000-7005, started by
    tools/redis_cluster.py unless one is up (``python tools/redis_cluster.py stop`` ends it);
    each with a namespace in one slot and with one spread over 3 shards (``?shards=3``),
    and the suites on a namespace spread over 3 shards of the plain server too."""
    install_dev(session)
    with server(session, "tools/redis_cluster.py"):
        env = {"CONVEYOR_TEST_BACKENDS": "redis_cluster,redis_cluster_sharded,redis_sharded"}
        session.run("pytest", *SERVER_SUITES, "tests/cluster", *session.posargs, env=env)


@nox.session(python=PYTHON)
def pgbouncer(session: nox.Session) -> None:
    """The contract and property suites on PostgreSQL through PgBouncer in transaction
    pooling (127.0.0.1:6432, started by tools/pgbouncer.py unless one is up; Debian's
    ``pgbouncer`` package), and the workers' polling fallback without a direct address."""
    install_dev(session)
    with server(session, "tools/pgbouncer.py"):
        env = {"CONVEYOR_TEST_BACKENDS": "pgbouncer"}
        session.run("pytest", *SERVER_SUITES, "tests/pgbouncer", *session.posargs, env=env)


@contextlib.contextmanager
def server(session: nox.Session, tool: str) -> Iterator[None]:
    """A local server ``tool start`` brings up for the block, and stops after it unless it
    was already up."""
    said = session.run("python", tool, "start", silent=True)
    print(said, end="")
    try:
        yield
    finally:
        if "already" not in str(said):
            session.run("python", tool, "stop")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    install_dev(session)
    session.run("mypy")


@nox.session(python=PYTHON)
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel, check them with twine, and install the wheel alone
    (no extras) to see that it imports, is typed and runs its command."""
    session.install("build>=1.2", "twine>=5.1")
    dist = os.path.join(session.create_tmp(), "dist")
    shutil.rmtree(dist, ignore_errors=True)  # the tmp folder outlives a session
    session.run("python", "-m", "build", "--outdir", dist)
    files = [os.path.join(dist, name) for name in sorted(os.listdir(dist))]
    session.run("python", "-m", "twine", "check", "--strict", *files)
    wheel = next(p for p in os.listdir(dist) if p.endswith(".whl"))
    session.install("--force-reinstall", f"{dist}/{wheel}")
    session.run("python", "-c", PACKAGE_CHECK)
    session.run("conveyor", "--version")


# What the installed wheel must hold: the version, the marker for type checkers, the license.
PACKAGE_CHECK = """
import importlib.metadata as m, importlib.resources as r, conveyor
assert conveyor.__version__ == m.version("conveyor-jobs"), conveyor.__version__
assert r.files("conveyor").joinpath("py.typed").is_file()
assert any(str(f).endswith("LICENSE") for f in m.files("conveyor-jobs"))
print("conveyor-jobs", conveyor.__version__, "wheel ok")
"""


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs, material theme) with --strict: a broken link,
    a missing page or a reference to a name that is not there fails the build.
    ``nox -s docs -- serve`` serves it at http://127.0.0.1:8000 instead."""
    session.install("-e", ".[all]", *nox.project.dependency_groups(PYPROJECT, "docs"))
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve")
        return
    site = os.path.join(session.create_tmp(), "site")
    quiet = {"NO_MKDOCS_2_WARNING": "1"}  # the theme's notice about its successor
    session.run("mkdocs", "build", "--strict", "--clean", "--site-dir", site, env=quiet)


@nox.session(python=PYTHON)
def protos(session: nox.Session) -> None:
    """Regenerate conveyor/_proto from protos/ (grpcio-tools + mypy-protobuf, pinned)."""
    install_dev(session)
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
    install_dev(session, "uv")  # uv makes the peers' virtualenvs
    session.run("python", "-m", "bench.run", *(session.posargs or ["--commandstats"]))


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """The long chaos and soak runs (CI runs short ones inside ``tests``): 10 minutes of
    worker kills and of server faults on each backend, 200,000 jobs of soak. Figures go
    to test-output/chaos/ and test-output/soak/; see tests/chaos/README.md."""
    install_dev(session)
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
