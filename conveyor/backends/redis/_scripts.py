"""The Lua scripts: each entry script prefixed with the generated constants and the
shared transitions (``lua/transitions.lua``), registered once.

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
    "renew",
    "record",
    "cancel",
    "retry",
    "discard",
    "maintain",
    "workers",
    "list",
)
LIBRARY = ("constants", "transitions")


def source(name: str) -> str:
    """The full text of one script: the constants, the transitions, then its body."""
    folder = resources.files(__package__).joinpath("lua")
    parts = [folder.joinpath(f"{part}.lua").read_text() for part in (*LIBRARY, name)]
    return "\n".join(
        f"-- {part}.lua\n{text}" for part, text in zip((*LIBRARY, name), parts, strict=True)
    )


class Scripts:
    """One ``AsyncScript`` per entry script."""

    def __init__(self, client: Redis) -> None:
        loaded = {name: client.register_script(source(name)) for name in NAMES}
        self.enqueue: AsyncScript = loaded["enqueue"]
        self.claim: AsyncScript = loaded["claim"]
        self.stage: AsyncScript = loaded["stage"]
        self.renew: AsyncScript = loaded["renew"]
        self.record: AsyncScript = loaded["record"]
        self.cancel: AsyncScript = loaded["cancel"]
        self.retry: AsyncScript = loaded["retry"]
        self.discard: AsyncScript = loaded["discard"]
        self.maintain: AsyncScript = loaded["maintain"]
        self.workers: AsyncScript = loaded["workers"]
        self.list: AsyncScript = loaded["list"]
