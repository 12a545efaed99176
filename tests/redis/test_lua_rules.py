"""The Lua executor's decisions agree with conveyor/core/rules.py, case by case.

The decisions are evaluated inside real Redis, with the same library every
script is built from (constants.lua + transitions.lua).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.backends.redis._scripts import LIBRARY, NAMES, script, source
from conveyor.core import rules
from conveyor.core.states import JobState, When

pytestmark = pytest.mark.redis

_BODY = """
local cases = cjson.decode(ARGV[1])
local out = {}
for i, c in ipairs(cases) do
  local f, a = c[1], c[2]
  local r
  if f == 'heir_runs' then r = heir_runs(a[1], a[2])
  elseif f == 'fails_parent' then r = fails_parent(a[1], a[2] == 1)
  elseif f == 'settles_as' then r = settles_as(a[1] ~= '' and a[1] or nil)
  elseif f == 'lease_loss_fails' then r = lease_loss_fails(a[1], a[2])
  elseif f == 'merge_failed_ids' then r = merge_failed_ids(a[1], a[2])
  elseif f == 'child_reason' then r = string.format(CHILD_REASON, a[1], a[2])
  elseif f == 'predecessor_reason' then r = string.format(PREDECESSOR_REASON, a[1], a[2])
  elseif f == 'ancestor_cancelled' then r = string.format(ANCESTOR_CANCELLED, a[1])
  elseif f == 'worker_lost' then r = string.format(WORKER_LOST, a[1])
  end
  if r == true then r = 1 elseif r == false or r == nil then r = 0 end
  out[i] = r
end
return cjson.encode(out)
"""


@pytest.fixture(scope="module")
def lua(redis_server: str) -> Any:
    client = redis.Redis.from_url(redis_server)
    registered = client.register_script(script(_BODY))  # linked like every entry script

    def run(cases: list[tuple[str, list[Any]]]) -> list[Any]:
        return list(json.loads(registered(keys=["{t_lua_rules}:"], args=[json.dumps(cases)])))

    yield run
    client.close()


def test_every_script_starts_with_the_library_it_uses() -> None:
    for part in LIBRARY:
        assert f"-- {part}.lua" in source("enqueue")
    enqueue, record = source("enqueue"), source("record")
    assert "local function create(" in enqueue and "function settle(" not in enqueue
    assert "function settle(" in record and "function release_heirs(" in record


def test_every_script_that_counts_writes_its_counts_at_the_end() -> None:
    """Counter increments wait in ``counts`` until ``flush_counts``: a script that
    reaches ``bump`` and never flushes would lose them, and the queue counts would
    drift from the jobs."""
    counting = [name for name in NAMES if "local function bump(" in source(name)]
    assert {"enqueue", "claim", "stage", "record", "cancel", "discard"} <= set(counting)
    for name in counting:
        body = source(name).rpartition(f"-- {name}.lua")[2]
        assert "flush_counts()" in body, name
        last_return = body.rindex("return ")
        assert body.index("flush_counts()") < last_return, name


def test_heir_conditions_agree(lua: Any) -> None:
    cases = [
        ("heir_runs", [when.value, state.value])
        for when in When
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    ]
    expected = [int(rules.heir_runs(When(w), JobState(s))) for _, (w, s) in cases]
    assert lua(cases) == expected


def test_parent_decisions_agree(lua: Any) -> None:
    settled = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    fails = [("fails_parent", [s.value, int(o)]) for s in settled for o in (False, True)]
    assert lua(fails) == [int(rules.fails_parent(JobState(s), bool(o))) for _, (s, o) in fails]
    settles = [("settles_as", [""]), ("settles_as", ["child-1"])]
    assert lua(settles) == [rules.settles_as(None).value, rules.settles_as("child-1").value]


def test_lease_loss_policy_agrees(lua: Any) -> None:
    cases = [("lease_loss_fails", [lost, most]) for lost in range(6) for most in range(4)]
    assert lua(cases) == [int(rules.lease_loss_fails(a, b)) for _, (a, b) in cases]


def test_reasons_read_the_same(lua: Any) -> None:
    cases = [
        ("child_reason", ["c1", "failed"]),
        ("predecessor_reason", ["p1", "cancelled"]),
        ("ancestor_cancelled", ["a1"]),
        ("worker_lost", [4]),
    ]
    assert lua(cases) == [
        rules.child_reason("c1", "failed"),
        rules.predecessor_reason("p1", "cancelled"),
        rules.ancestor_cancelled("a1"),
        rules.worker_lost(4),
    ]


_ids = st.lists(st.text("0123456789abcdef-", min_size=1, max_size=36), max_size=1100)


@settings(max_examples=40, deadline=None)
@given(existing=_ids, more=_ids)
def test_the_failed_ids_bound_agrees(lua: Any, existing: list[str], more: list[str]) -> None:
    existing = existing[: rules.MAX_FAILED_IDS]  # what storage can hold
    got = lua([("merge_failed_ids", [",".join(existing), ",".join(more)])])[0]
    assert got == ",".join(rules.merge_failed_ids(existing, more))
