"""conveyor.core.metrics without a live worker: maintenance counts, storage that
cannot be read, a worker loop that is gone, and prometheus-client missing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

import conveyor
from conveyor.cli import main
from conveyor.core import metrics
from conveyor.core.errors import BackendError
from conveyor.core.storage import MaintenanceReport


def test_maintenance_counts_repairs_and_expired_leases() -> None:
    registry = CollectorRegistry()
    counted = metrics.worker_metrics(registry)
    assert metrics.worker_metrics(registry) is counted  # one set of metrics per registry
    counted.maintained(MaintenanceReport(recovered=2, lost=["a"], repaired=["b", "c", "d"]))
    counted.maintained(MaintenanceReport())
    assert registry.get_sample_value("conveyor_reconciler_repairs_total") == 3
    expired = "conveyor_expired_leases_total"
    assert registry.get_sample_value(expired, {"result": "requeued"}) == 2
    assert registry.get_sample_value(expired, {"result": "failed"}) == 1


class Down:
    """Storage whose every read fails, as when the server is down."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise BackendError("connection refused")

        return fail


async def test_storage_that_cannot_be_read_is_up_0_and_nothing_else() -> None:
    state = await metrics.read_namespace(Down())  # type: ignore[arg-type]
    assert state.error == "connection refused"
    families = list(metrics.namespace_metrics(state))
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [
        ("conveyor_storage_up", [0.0])
    ]


def test_a_scrape_after_the_workers_loop_closed_reports_storage_down() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    gauges = metrics._QueueGauges(Down(), ["q"], loop)  # type: ignore[arg-type]
    [up] = gauges.collect()
    assert (up.name, up.samples[0].value) == ("conveyor_storage_up", 0.0)


def test_without_prometheus_client_metrics_are_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # importing it fails
    with pytest.raises(conveyor.ConfigurationError, match=r"conveyor-jobs\[metrics\]"):
        conveyor.Worker(metrics_port=9100)
    with pytest.raises(conveyor.ConfigurationError, match="prometheus-client"):
        conveyor.Worker(metrics=True)


def test_a_worker_without_metrics_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, conveyor\n"
        "conveyor.Worker(conveyor.Config(url='memory://x'))\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
        "conveyor.Worker(conveyor.Config(url='memory://y'), metrics=True)\n"
        "assert 'prometheus_client' in sys.modules, 'not imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_metrics_port_out_of_range_is_refused() -> None:
    with pytest.raises(conveyor.ConfigurationError, match=r"0\.\.65535"):
        conveyor.Worker(metrics_port=70000)
    result = CliRunner().invoke(
        main,
        ["worker", "tests.cli.app:worker", "--processes", "2", "--metrics-port", "65535"],
    )
    assert result.exit_code == 2 and "leaves no port for 2 processes" in result.output
