"""Write conveyor/backends/redis/lua/constants.lua from the Python that states it.

``python tools/genlua.py`` writes the file; ``--check`` exits 1 when it is stale.
"""

from __future__ import annotations

import sys

from conveyor.backends.redis.layout import LUA_CONSTANTS, render_constants


def main() -> int:
    text = render_constants()
    if "--check" in sys.argv[1:]:
        return 0 if LUA_CONSTANTS.read_text() == text else 1
    LUA_CONSTANTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
