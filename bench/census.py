"""The PostgreSQL wire census: round trips, statements and transactions per job, counted on
the wire by ``bench.pgwire``'s proxy (not derived from the timed runs, which connect to the
server directly and are never proxied).

Once per run (with ``--commandstats``), before the rounds, at ``--census-jobs`` jobs: W1
single, W1 batched, W2 at both concurrencies (the worker waits for the harness before its
first claim, so the count starts exactly there and ends when all jobs have succeeded), and
W3's idle worker at a gentle rate. Counted separately: the pool connections (everything the
library sends for its operations) and the LISTEN connections (notifications received).
"""

from __future__ import annotations

from typing import Any

from .backends import PostgresBackend
from .pgwire import CountingProxy, diff
from .workloads import Settings, _w2, w1_batched, w1_single, w3_latency

CENSUS_W3_RATE = 50.0
CENSUS_W3_SECONDS = 2.0


class WireBackend(PostgresBackend):
    """The same PostgreSQL, reached through the counting proxy; counts come from the wire."""

    counts_key = "wire"

    def __init__(self, base: PostgresBackend, proxy: CountingProxy) -> None:
        super().__init__(base._url, counting=True)
        self.admin = base.admin  # the harness's own connection stays direct
        self._have_pgstattuple = base._have_pgstattuple
        self.proxy = proxy

    def url(self, ns: str) -> str:
        return self.proxied_url(self.proxy.port)

    async def open(self) -> None:
        """The base backend's admin connection is reused."""

    async def aclose(self) -> None:
        """Left to the base backend."""

    async def snap(self, storage: Any) -> Any:
        return {
            "pool": self.proxy.totals(listeners=False),
            "listen": self.proxy.totals(listeners=True),
        }

    def trips(
        self,
        before: Any,
        after: Any,
        jobs: int,
        *,
        polls: int = 0,
        worker: Any = None,
        library_client: Any = None,
    ) -> dict[str, Any] | None:
        if before is None or after is None:
            return None
        return wire_per_job(
            diff(after["pool"], before["pool"]), diff(after["listen"], before["listen"]), jobs
        )


def wire_per_job(pool: dict[str, Any], listen: dict[str, Any], jobs: int) -> dict[str, Any]:
    per = float(jobs) if jobs else 1.0
    statements = pool["statements"]
    return {
        "jobs": jobs,
        "round_trips_per_job": pool["round_trips"] / per,
        "ready_for_query_per_job": pool["ready_for_query"] / per,
        "transactions_per_job": pool["transactions"] / per,
        "autocommit_statements_per_job": pool.get("implicit_transactions", 0) / per,
        "statements_per_job": sum(statements.values()) / per,
        "statements": {
            k: v / per for k, v in sorted(statements.items(), key=lambda kv: (-kv[1], kv[0]))
        },
        "notifications_received_per_job": listen["notifications"] / per,
        "listen_connections": listen["connections"],
        "raw": {"pool": pool, "listen": listen},
    }


async def pg_census(settings: Settings, base: PostgresBackend, jobs: int) -> dict[str, Any]:
    """Each census workload once through the proxy; returns {name: result}."""
    out: dict[str, Any] = {}
    async with CountingProxy(base.port) as proxy:
        be = WireBackend(base, proxy)
        out["w1_single"] = await w1_single(settings, be, jobs=jobs)
        out["w1_batched"] = await w1_batched(settings, be, jobs=jobs)
        for name, conc in (
            ("w2_default", settings.default_concurrency),
            ("w2_tuned", settings.tuned_concurrency),
        ):
            out[name] = await _w2(settings, be, conc, jobs, hold=True)
        out["w3"] = await w3_latency(settings, be, CENSUS_W3_RATE, CENSUS_W3_SECONDS)
    return out
