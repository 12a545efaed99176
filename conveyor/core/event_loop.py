"""Which event loop a worker runs on: uvloop when it is installed, asyncio's otherwise.

uvloop (the ``uvloop`` extra) runs the worker's own machinery (sockets, futures,
call-backs) in C; bench/PROCESSES_RESULTS.md measures what it gains on each backend.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

from .errors import ConfigurationError

LOOPS = ("auto", "asyncio", "uvloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(name: str) -> LoopFactory | None:
    """The factory for ``name`` (one of ``LOOPS``); None means asyncio's default loop.

    Raises:
        ConfigurationError: ``name`` is unknown, or ``uvloop`` is asked for and not
            installed.
    """
    if name not in LOOPS:
        raise ConfigurationError(f"unknown event loop {name!r}; use one of {', '.join(LOOPS)}")
    if name == "asyncio" or (name == "auto" and importlib.util.find_spec("uvloop") is None):
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigurationError(
            "the uvloop event loop needs uvloop: pip install 'conveyor-jobs[uvloop]'"
        ) from None
    return uvloop.new_event_loop
