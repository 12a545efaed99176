"""The Lua scripts: each entry script linked with the generated constants and the
transitions it uses (``lua/transitions.lua``), registered once.

Redis runs a script's whole text on every call, so defining every transition and
constant in every script would cost each call the closures and tables it never
uses (measured: 14 µs a call against 5 µs for the old hand-picked library, when a
one-round-trip enqueue takes about 200 µs). The library stays one module for its
readers; each script carries only the definitions it reaches, in the library's
order (``link``).

redis-py runs a registered script by SHA and loads it again on ``NOSCRIPT``
(after a server restart empties the script cache).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from ._connect import Client

NAMES = (
    "enqueue",
    "claim",
    "stage",
    "renew",
    "progress",
    "record",
    "cancel",
    "retry",
    "retry_failed",
    "discard",
    "queue_controls",
    "maintain",
    "workers",
    "oldest_queued",
    "list",
    "children",
    "family_tree",
)
LIBRARY = ("constants", "transitions")

_FUNCTION = re.compile(r"^(?:local )?function (\w+)\(")
_LOCAL = re.compile(r"^local ([\w, ]+?)\s*(?:=|$)")
_WORD = re.compile(r"\b\w+\b")


def _read(part: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{part}.lua").read_text()


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def _blocks(text: str) -> list[tuple[frozenset[str], str]]:
    """The top-level statements of a library, each with the names it defines and
    the comment above it: a function, or a ``local`` (a table may span lines).
    Anything else defines nothing and is always kept."""
    blocks: list[tuple[frozenset[str], str]] = []
    lines = text.splitlines(keepends=True)
    comment: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--") or not line.strip():
            comment.append(line)
            i += 1
            continue
        end = i
        if function := _FUNCTION.match(line):
            names = frozenset([function.group(1)])
            if not line.rstrip().endswith(" end"):  # a one-line function ends where it starts
                while lines[end].rstrip() != "end":
                    end += 1
        elif declared := _LOCAL.match(line):
            names = frozenset(n.strip() for n in declared.group(1).split(","))
            depth = _code(line).count("{") - _code(line).count("}")
            while depth > 0:
                end += 1
                depth += _code(lines[end]).count("{") - _code(lines[end]).count("}")
        else:
            names = frozenset()
        blocks.append((names, "".join([*comment, *lines[i : end + 1]])))
        comment = []
        i = end + 1
    return blocks


def link(body: str, library: str) -> str:
    """``library`` with only the definitions ``body`` reaches, directly or not, in order."""
    blocks = _blocks(library)
    defines = {name: text for names, text in blocks for name in names}
    needed: set[str] = set()
    todo = set(_WORD.findall(_code(body))) & defines.keys()
    while todo:
        name = todo.pop()
        needed.add(name)
        todo |= (set(_WORD.findall(_code(defines[name]))) & defines.keys()) - needed
    return "".join(text for names, text in blocks if not names or names & needed)


def script(body: str, name: str = "body") -> str:
    """A whole script: the constants and transitions ``body`` reaches, then ``body``."""
    library = "".join(f"-- {part}.lua\n{_read(part)}" for part in LIBRARY)
    return f"{link(body, library)}\n-- {name}.lua\n{body}"


def source(name: str) -> str:
    """The full text of one entry script (``lua/<name>.lua``), linked."""
    return script(_read(name), name)


class Scripts:
    """One ``AsyncScript`` per entry script."""

    def __init__(self, client: Client) -> None:
        loaded = {name: client.register_script(source(name)) for name in NAMES}
        self.enqueue: AsyncScript = loaded["enqueue"]
        self.claim: AsyncScript = loaded["claim"]
        self.stage: AsyncScript = loaded["stage"]
        self.renew: AsyncScript = loaded["renew"]
        self.progress: AsyncScript = loaded["progress"]
        self.record: AsyncScript = loaded["record"]
        self.cancel: AsyncScript = loaded["cancel"]
        self.retry: AsyncScript = loaded["retry"]
        self.retry_failed: AsyncScript = loaded["retry_failed"]
        self.discard: AsyncScript = loaded["discard"]
        self.queue_controls: AsyncScript = loaded["queue_controls"]
        self.maintain: AsyncScript = loaded["maintain"]
        self.workers: AsyncScript = loaded["workers"]
        self.oldest_queued: AsyncScript = loaded["oldest_queued"]
        self.list: AsyncScript = loaded["list"]
        self.children: AsyncScript = loaded["children"]
        self.family_tree: AsyncScript = loaded["family_tree"]
