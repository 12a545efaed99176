"""How jobs look in Redis, stated once for Python and Lua.

The Python side (``_codec.py``, ``storage.py``) reads these names directly;
the Lua side reads them from ``lua/constants.lua``, which ``render_constants``
writes from this module and ``conveyor.core.rules``
(``python -m conveyor.backends.redis.layout`` or ``nox -s generate``;
``tests/unit/test_generated_fresh.py`` fails when the file is stale).
"""

from __future__ import annotations

import sys
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
)

#: An outcome travels to ``record.lua`` as these arguments, then ``n`` specs.
OUTCOME_ARGS = ("kind", "id", "token", "error", "retry_at", "n")

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

LUA_CONSTANTS = Path(__file__).parent / "lua" / "constants.lua"


def _lua_table(mapping: dict[str, str] | dict[str, int]) -> str:
    items = ", ".join(f"{key} = {_lua_value(value)}" for key, value in mapping.items())
    return "{ " + items + " }"


def _lua_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_constants() -> str:
    """The text of ``lua/constants.lua``."""
    codes = {state.value: code for state, code in STATE_CODE.items()}
    lines = [
        "-- Generated from conveyor/backends/redis/layout.py and conveyor/core/rules.py by",
        "-- `python -m conveyor.backends.redis.layout`: do not edit by hand.",
        "",
        "-- Job hash fields (layout.FIELD).",
        f"local F = {_lua_table(FIELD)}",
        "-- States as stored: one letter each (layout.STATE_CODE), and back.",
        f"local CODE = {_lua_table(codes)}",
        "local NAME = {}",
        "for name, code in pairs(CODE) do NAME[code] = name end",
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
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Write ``lua/constants.lua``; with ``--check``, exit 1 if it is stale instead."""
    text = render_constants()
    if "--check" in sys.argv[1:]:
        return 0 if LUA_CONSTANTS.read_text() == text else 1
    LUA_CONSTANTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
