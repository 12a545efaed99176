"""What a peer adapter provides; the driver (``bench.peers.driver``) does the rest.

An adapter is a module ``bench/peers/<name>_peer.py`` with ``PEER = <a Peer>`` and the
job functions its worker runs. Each job function calls ``ledger.record(index)`` first
and does nothing else (a no-op job); the W4 callback records ``children`` as its index.

The hooks are ``async``; adapters of synchronous libraries just call them inside
(the driver runs nothing else meanwhile). Standard library only here: this module is
imported inside each peer's own virtualenv.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

Backend = Literal["redis", "postgres"]


@dataclass(frozen=True)
class Place:
    """Where one measurement runs: a Redis database flushed before and after, or a
    PostgreSQL database created for it and dropped after."""

    backend: Backend
    url: str  # redis://127.0.0.1:6379/12, or postgresql://postgres@127.0.0.1:5432/bench_peer_...
    ledger: Path
    workdir: Path


class Unsupported(Exception):
    """The system has no such operation (e.g. no batch enqueue, no fan-in construct)."""


class Peer:
    """One job system on one backend, as the driver sees it."""

    name: ClassVar[str]  # "rq", "saq-postgres": the adapter's key
    package: ClassVar[str]  # the PyPI distribution whose version is reported
    backend: ClassVar[Backend]
    #: The worker's concurrency with the system's defaults (in one worker process), and
    #: the best one-process setting found for no-op jobs (``worker_argv`` says how).
    default_concurrency: ClassVar[int]
    tuned_concurrency: ClassVar[int]
    #: W2 with the default worker drains at most this many jobs (None: ``--jobs``), for a
    #: worker that forks per job and would take minutes over 10,000; a rate either way.
    default_drain_jobs: ClassVar[int | None] = None
    #: The native "run this after all of those" construct, or None where there is none.
    fan_in: ClassVar[str | None] = None

    async def open(self, place: Place) -> None:
        """Connect (and create the system's tables in ``place``, where it has any)."""
        self.place = place

    async def close(self) -> None:
        """Disconnect."""

    async def enqueue(self, indices: Sequence[int], pad: str = "") -> None:
        """Enqueue one no-op job per index, one at a time, each awaited (W1, W3).
        ``pad`` is an extra string argument (W5 makes each payload ~100 bytes with it)."""
        raise NotImplementedError

    async def enqueue_batch(self, indices: Sequence[int], size: int, pad: str = "") -> None:
        """The same in batches of ``size`` per round trip; raise ``Unsupported`` if the
        system has no batch enqueue."""
        raise Unsupported("no batch enqueue")

    async def queued(self) -> int:
        """How many jobs wait in the queue (checks W1 and the W2 preload)."""
        raise NotImplementedError

    def worker_argv(self, tuned: bool) -> list[str]:
        """The command that starts one worker process, with the system's defaults or
        tuned (run with this virtualenv's ``python``, cwd the repository,
        ``$BENCH_LEDGER`` and ``$BENCH_URL`` set)."""
        raise NotImplementedError

    async def submit_fan_in(self, children: int) -> None:
        """W4: ``children`` no-op jobs (indices 0..children-1) and one job (index
        ``children``) that the system itself starts only after all of them."""
        raise Unsupported("no native construct to run a job after a group of jobs")
