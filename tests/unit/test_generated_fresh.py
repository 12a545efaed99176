"""The checked-in Lua constants match what conveyor/backends/redis/layout.py renders now."""

from __future__ import annotations

from conveyor.backends.redis import layout


def test_lua_constants_are_fresh() -> None:
    fresh = layout.render_constants()
    assert layout.LUA_CONSTANTS.read_text() == fresh, (
        "lua/constants.lua is stale: run `nox -s generate` (python tools/genlua.py)"
    )


def test_the_constants_name_every_state_and_spec_argument() -> None:
    text = layout.render_constants()
    for code in layout.STATE_CODE.values():
        assert f"= '{code}'" in text
    assert f"local SPEC_FIELDS = {len(layout.SPEC_ARGS)}" in text
