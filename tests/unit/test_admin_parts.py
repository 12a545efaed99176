"""The admin's small parts: chart scales and axes, time phrases, tick merging, auth headers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.admin.auth import BasicAuth
from conveyor.admin.charts import Series, line_chart, nice_scale
from conveyor.admin.events import MAX_IDS, Tick
from conveyor.admin.render import ago, error_line


@pytest.mark.parametrize(
    ("value", "top", "step"),
    [(0, 4, 1), (3, 4, 1), (5, 6, 2), (11, 15, 5), (59, 60, 20), (99, 100, 25), (4999, 6000, 2000)],
)
def test_nice_scale(value: float, top: int, step: int) -> None:
    assert nice_scale(value) == (top, step)
    assert top >= value and top // step <= 4


def test_line_chart_has_axes_labels_and_one_line_per_series() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    minutes = [start + timedelta(minutes=i) for i in range(60)]
    svg = line_chart(
        "Jobs <per> minute",
        minutes,
        [Series("ok", "succeeded", list(range(60))), Series("bad", "failed", [0] * 60)],
    )
    assert svg.count('<polyline class="line') == 2
    assert svg.count('class="axis"') >= 2
    for label in ("12:00", "12:10", "12:50"):
        assert f">{label}</text>" in svg
    assert ">60</text>" in svg and ">0</text>" in svg  # the y scale: 0 to the nice ceiling of 59
    assert "Jobs &lt;per&gt; minute" in svg
    assert svg.count("<circle") == 59  # a tooltip per non-zero point


def test_ago_phrases() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert ago(None) == ""
    assert ago(now, now) == "now"
    assert ago(now - timedelta(seconds=5), now) == "5 s ago"
    assert ago(now - timedelta(minutes=3), now) == "3 min ago"
    assert ago(now + timedelta(hours=2), now) == "in 2.0 h"
    assert ago(now - timedelta(days=3), now) == "3.0 d ago"


def test_error_line_is_the_exception_line_of_a_traceback() -> None:
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad\n'
    assert error_line(trace) == "ValueError: bad"
    assert error_line(None) == ""


def test_tick_caps_ids_and_merges() -> None:
    tick = Tick()
    for i in range(MAX_IDS):
        tick.add(str(i))
    assert not tick.everything and len(tick.ids) == MAX_IDS
    tick.add("one more")
    assert tick.everything and tick.ids == set()
    small = Tick({"a"})
    small.merge(Tick({"b"}))
    assert small.to_dict() == {"ids": ["a", "b"], "all": False}
    small.merge(tick)
    assert small.to_dict() == {"ids": [], "all": True}


def test_basic_auth_accepts_only_its_credentials() -> None:
    auth = BasicAuth("ops", "pa:ss")

    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert auth.accepts(header("ops:pa:ss"))
    assert not auth.accepts(header("ops:pa"))
    assert not auth.accepts(header("OPS:pa:ss"))
    assert not auth.accepts(header("nocolon"))
    assert not auth.accepts("Bearer abc")
    assert not auth.accepts("Basic ***")
    assert not auth.accepts(None)
    assert "pa:ss" not in repr(auth)
