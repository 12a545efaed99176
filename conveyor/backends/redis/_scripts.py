"""The Lua scripts, each prefixed with the shared ``lib.lua`` and registered once.

redis-py runs a registered script by SHA and loads it again on ``NOSCRIPT``
(after a server restart empties the script cache).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

NAMES = (
    "enqueue",
    "claim",
    "stage",
    "settle",
    "renew",
    "maintain",
    "cancel",
    "retry",
    "discard",
    "workers",
    "list",
)


def source(name: str) -> str:
    """The full text of one script: the shared library, then its body."""
    folder = resources.files(__package__).joinpath("lua")
    lib = folder.joinpath("lib.lua").read_text()
    body = folder.joinpath(f"{name}.lua").read_text()
    return f"{lib}\n-- {name}.lua\n{body}"


class Scripts:
    """One ``AsyncScript`` per transition."""

    def __init__(self, client: Redis) -> None:
        loaded = {name: client.register_script(source(name)) for name in NAMES}
        self.enqueue: AsyncScript = loaded["enqueue"]
        self.claim: AsyncScript = loaded["claim"]
        self.stage: AsyncScript = loaded["stage"]
        self.settle: AsyncScript = loaded["settle"]
        self.renew: AsyncScript = loaded["renew"]
        self.maintain: AsyncScript = loaded["maintain"]
        self.cancel: AsyncScript = loaded["cancel"]
        self.retry: AsyncScript = loaded["retry"]
        self.workers: AsyncScript = loaded["workers"]
        self.discard: AsyncScript = loaded["discard"]
        self.list: AsyncScript = loaded["list"]
