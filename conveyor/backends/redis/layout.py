"""How jobs look in Redis, stated once for Python and Lua.

The Python side (``_codec.py``, ``storage.py``) reads these names directly;
the Lua side reads them from ``lua/constants.lua``, which ``render_constants``
writes from this module and ``conveyor.core.rules``
(``python tools/genlua.py`` or ``nox -s generate``;
``tests/unit/test_generated_fresh.py`` fails when the file is stale).
"""

from __future__ import annotations

from pathlib import Path

from conveyor.core import rules
from conveyor.core.states import JobState

#: A job hash's fields, by what they hold. Absent fields mean the default.
FIELD = {
    "type": "t",
    "queue": "q",  # absent: the type
    "payload": "p",  # p1, p2, ... continue a payload stored in pieces
    "state": "s",  # one letter of STATE_CODE
    "priority": "pr",
    "run_at": "ra",
    "max_attempts": "m",  # absent: DEFAULT_MAX_ATTEMPTS
    "timeout": "to",
    "headers": "h",  # JSON object of strings
    "parent": "par",
    "predecessor": "pred",
    "when": "w",  # an heir's condition
    "optional": "o",
    "declared_by": "d",
    "attempt": "a",
    "error": "e",
    "started": "st",
    "finished": "fin",
    "token": "tok",  # the fencing token of the running attempt's lease
    "worker": "wid",
    "lost": "lost",  # lease losses so far
    "open": "open",  # open children
    "failed_ids": "fids",  # comma-separated
    "reason": "why",
    "failing_child": "fc",
    "predecessor_state": "ps",
    "predecessor_failed_ids": "pf",
    "result": "res",  # res1, res2, ... continue a result stored in pieces
    "result_type": "rt",
    "backoff": "bo",  # the job's own back-off, as Backoff.to_text()
    "key": "k",  # a unique key in its queue (rule 15)
    "key_ttl": "kt",  # seconds the key stays held after the job settles
    "progress": "prog",  # the last progress reported, as Progress.to_text()
    "plan": "plan",  # members a producer declared for it (core/plan.py), staged per attempt
    "root": "root",  # a declaration's top-level job (its family's root)
    "ready": "rd",  # a queued job's ready time (rule 10), epoch milliseconds; cleared on leaving
}

#: A job's state is one letter in its hash: it keeps a queued job's hash in a
#: smaller allocation (32 bytes less per job with typical payloads).
STATE_CODE = {
    JobState.HELD: "h",
    JobState.SCHEDULED: "d",
    JobState.QUEUED: "q",
    JobState.RUNNING: "r",
    JobState.WAITING: "w",
    JobState.SUCCEEDED: "s",
    JobState.FAILED: "f",
    JobState.CANCELLED: "c",
}

DEFAULT_MAX_ATTEMPTS = 5

#: A job spec travels to a script as these consecutive arguments ('' when absent).
SPEC_ARGS = (
    "id",
    "type",
    "queue",
    "payload",
    "run_at",
    "max_attempts",
    "timeout",
    "priority",
    "headers",
    "parent",
    "predecessor",
    "when",
    "optional",
    "backoff",
    "key",
    "key_ttl",
    "plan",
    "root",
)

#: An outcome travels to ``record.lua`` as these arguments, then ``n`` specs.
#: ``run_at`` is a retry's time, or a snoozed hand-back's ('' for a plain one).
OUTCOME_ARGS = ("kind", "id", "token", "error", "run_at", "result", "result_type", "n")

#: The ``kind`` argument of each outcome.
OUTCOME_KIND = {
    "success": "ok",
    "retry": "retry",
    "failure": "fail",
    "hand_back": "back",
}

#: Error replies a script returns with ``redis.error_reply``; ``_errors.py``
#: turns each into its typed error. The text after the code is, for
#: ``not_found``: the id; ``state``: id, verb, current state, why;
#: ``lease_lost``: the id.
ERROR = {
    "not_found": "CONVEYOR_NOT_FOUND",
    "state": "CONVEYOR_STATE",
    "lease_lost": "CONVEYOR_LEASE_LOST",
}

#: Rule 14: a queue's controls, a field of the ``ctl`` hash named after the queue:
#: ``paused|max_running|rate|per`` (paused '1' or '0'; '' for no limit).
CONTROLS_FIELDS = ("paused", "max_running", "rate", "per")

LUA_CONSTANTS = Path(__file__).parent / "lua" / "constants.lua"


def _lua_table(mapping: dict[str, str] | dict[str, int]) -> str:
    items = [f"{key} = {_lua_value(value)}" for key, value in mapping.items()]
    if len(items) <= 4:
        return "{ " + ", ".join(items) + " }"
    return "{\n" + "".join(f"  {item},\n" for item in items) + "}"


def _lua_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_constants() -> str:
    """The text of ``lua/constants.lua``."""
    codes = {state.value: code for state, code in STATE_CODE.items()}
    lines = [
        "-- Generated from conveyor/backends/redis/layout.py and conveyor/core/rules.py by",
        "-- `python tools/genlua.py` (nox -s generate): do not edit by hand.",
        "",
        "-- Job hash fields (layout.FIELD).",
        f"local F = {_lua_table(FIELD)}",
        "-- States as stored: one letter each (layout.STATE_CODE), and back.",
        f"local CODE = {_lua_table(codes)}",
        f"local NAME = {_lua_table({code: name for name, code in codes.items()})}",
        f"local DEFAULT_MAX_ATTEMPTS = {_lua_value(DEFAULT_MAX_ATTEMPTS)}",
        "-- A spec's arguments, by offset from its first (layout.SPEC_ARGS).",
        f"local SPEC = {_lua_table({name: i for i, name in enumerate(SPEC_ARGS)})}",
        f"local SPEC_FIELDS = {len(SPEC_ARGS)}",
        "-- An outcome's arguments, by offset from its first (layout.OUTCOME_ARGS).",
        f"local OUTCOME = {_lua_table({name: i for i, name in enumerate(OUTCOME_ARGS)})}",
        f"local OUTCOME_FIELDS = {len(OUTCOME_ARGS)}",
        f"local KIND = {_lua_table(OUTCOME_KIND)}",
        "-- Error reply codes (layout.ERROR).",
        f"local ERR = {_lua_table(ERROR)}",
        "-- The rulebook's constants (conveyor/core/rules.py).",
        f"local MAX_FAILED_IDS = {_lua_value(rules.MAX_FAILED_IDS)}",
        f"local CHILD_REASON = {_lua_value(rules.CHILD_REASON)}",
        f"local PREDECESSOR_REASON = {_lua_value(rules.PREDECESSOR_REASON)}",
        f"local ANCESTOR_CANCELLED = {_lua_value(rules.ANCESTOR_CANCELLED)}",
        f"local WORKER_LOST = {_lua_value(rules.WORKER_LOST)}",
        f"local DUPLICATE_REASON = {_lua_value(rules.DUPLICATE_REASON)}",
        f"local NOT_FAILED = {_lua_value(rules.NOT_FAILED)}",
        f"local FAILED_BY_FAMILY = {_lua_value(rules.FAILED_BY_FAMILY)}",
        f"local NEVER_RELEASED = {_lua_value(rules.NEVER_RELEASED)}",
        f"local ANCESTOR_SETTLED = {_lua_value(rules.ANCESTOR_SETTLED)}",
        f"local FAMILY_PRUNED = {_lua_value(rules.FAMILY_PRUNED)}",
        f"local RECONCILE_BATCH = {_lua_value(rules.RECONCILE_BATCH)}",
        f"local LIMIT_POLL = {rules.LIMIT_POLL!r}",
        "",
    ]
    return "\n".join(lines)
