"""Watching a family through the Storage protocol, and drawing it with rich.

``FamilyWatch`` reads the tree below a root job (its heirs included) with
``Storage.get`` and ``Storage.family``; a settled subtree never changes again,
so it is read once and kept. ``render`` draws a snapshot: a progress bar, a
count per state, and a tree whose height stays bounded however many line
items there are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .._proto.examples.shop_pb2 import Charge, LineItem, Order, Reserve, Summary
from ..core.errors import ConveyorError
from ..core.job import Job
from ..core.states import JobState
from ..core.storage import Storage

GLYPHS: dict[JobState, tuple[str, str]] = {
    JobState.HELD: ("◌", "dim"),
    JobState.SCHEDULED: ("◷", "yellow"),
    JobState.QUEUED: ("○", "blue"),
    JobState.RUNNING: ("●", "cyan"),
    JobState.WAITING: ("◐", "magenta"),
    JobState.SUCCEEDED: ("✔", "green"),
    JobState.FAILED: ("✖", "bold red"),
    JobState.CANCELLED: ("⊘", "red"),
}
# Only these types declare children; the watch asks storage for no one else's.
PARENT_TYPES = frozenset({Order.DESCRIPTOR.full_name, LineItem.DESCRIPTOR.full_name})


@dataclass
class Node:
    """A job and the jobs it declared (children, released heirs, held heirs)."""

    job: Job
    children: list[Node] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return self.job.state.settled and all(child.settled for child in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def retried(self) -> bool:
        """Whether any job here or below ran more than once."""
        return any(node.job.attempt > 1 for node in self.walk())


class FamilyWatch:
    """Reads the family below ``root_id`` as it grows and settles."""

    def __init__(self, storage: Storage, root_id: str, parent_types: frozenset[str]) -> None:
        self._storage = storage
        self._root_id = root_id
        self._parent_types = parent_types
        self._final: dict[str, Node] = {}

    async def snapshot(self) -> Node | None:
        """The tree as storage sees it now; ``None`` if the root is gone (pruned)."""
        job = await self._storage.get(self._root_id)
        return None if job is None else await self._load(job)

    async def _load(self, job: Job) -> Node:
        kept = self._final.get(job.id)
        if kept is not None:
            return kept
        node = Node(job)
        if job.type in self._parent_types:
            for child in await self._storage.family(job.id):
                node.children.append(await self._load(child))
        if node.settled:  # nothing below a settled family changes any more
            self._final[job.id] = node
        return node


def label(job: Job) -> str:
    """A short human name for a job of the shop family."""
    try:
        message = job.payload()
    except ConveyorError:
        return job.type.rsplit(".", 1)[-1]
    if isinstance(message, Order):
        return f"order {message.order_id} · {len(message.items)} line items"
    if isinstance(message, LineItem):
        return f"{message.sku} x{message.quantity}"
    if isinstance(message, Reserve):
        return "reserve"
    if isinstance(message, Charge):
        return f"charge ${message.amount_cents / 100:,.2f}"
    if isinstance(message, Summary):
        return "summary (heir: runs after the whole family)"
    return job.type


def glyph(state: JobState) -> Text:
    mark, style = GLYPHS[state]
    return Text(mark, style=style)


def _status(node: Node) -> Text:
    job = node.job
    text = Text.assemble(glyph(job.state), " ", label(job), " ", (str(job.state), "dim"))
    if job.attempt > 1 or (job.last_error and not job.state.settled):
        text.append(f"  ↻ attempt {job.attempt}/{job.max_attempts}", style="yellow")
    if job.last_error and job.state is not JobState.SUCCEEDED:
        text.append(f"  {_last_line(job.last_error, 80)}", style="yellow")
    return text


def _last_line(error: str, limit: int) -> str:
    """The last line of a traceback: the exception and its message."""
    lines = error.strip().splitlines() or [""]
    return lines[-1][:limit]


def _line(node: Node, number: int) -> Text:
    text = Text(f"line {number:>2} ", style="bold")
    text.append_text(_status(node))
    for child in node.children:
        text.append("   ")
        text.append_text(glyph(child.job.state))
        text.append(" " + label(child.job).split(" ", 1)[0])
        if child.job.attempt > 1:
            text.append(f" ↻{child.job.attempt}", style="yellow")
        if child.job.last_error and not child.job.state.settled:
            text.append(f"  retry after: {_last_line(child.job.last_error, 60)}", style="yellow")
    return text


def render(root: Node, *, expected: int, elapsed: float, max_lines: int) -> RenderableType:
    """A progress bar, a count per state, and the tree with at most ``max_lines`` line items."""
    nodes = list(root.walk())
    states = Counter(node.job.state for node in nodes)
    settled = sum(states[s] for s in JobState if s.settled)
    total = max(expected, len(nodes))
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=total, completed=settled, width=40),
        Text(f"{settled}/{total} jobs settled", style="bold"),
        Text(f"{elapsed:5.1f}s", style="dim"),
    )
    counts = Text("  ")
    for state in JobState:
        if states[state]:
            counts.append_text(glyph(state))
            counts.append(f" {state} {states[state]}   ")
    retries = sum(max(node.job.attempt - 1, 0) for node in nodes if node.job.state.settled)
    if retries:
        counts.append(f"↻ retries {retries}", style="yellow")

    tree = Tree(_status(root), guide_style="dim")
    lines = [child for child in root.children if child.job.predecessor_id is None]
    heirs = [child for child in root.children if child.job.predecessor_id is not None]
    done = {n.job.id for n in lines if n.job.state is JobState.SUCCEEDED and not n.retried()}
    if done:
        tree.add(Text.assemble(glyph(JobState.SUCCEEDED), f" {len(done)} line items done"))
    shown = 0
    hidden: Counter[JobState] = Counter()
    for number, node in enumerate(lines, start=1):
        if node.job.id in done:
            continue
        if shown < max_lines:
            tree.add(_line(node, number))
            shown += 1
        else:
            hidden[node.job.state] += 1
    if hidden:
        rest = ", ".join(f"{count} {state}" for state, count in sorted(hidden.items()))
        tree.add(Text(f"… {sum(hidden.values())} more line items ({rest})", style="dim"))
    for heir in heirs:
        tree.add(_status(heir))
    return Group(bar, counts, Text(), tree)
