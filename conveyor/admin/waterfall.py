"""A family's timeline as a server-rendered SVG waterfall: one row per member
(each child under its parent, each heir after its predecessor's family), or, past
``ROWS``, one row per level and type with the spread of its members."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from conveyor.core.family import FamilySummary, Member
from conveyor.core.job import Job

ROWS = 120  # members drawn one per row; a larger family is drawn by level and type
WIDTH, LABEL, ROW, TOP, BOTTOM = 960, 300, 16, 6, 26


@dataclass(frozen=True, slots=True)
class _Row:
    label: str
    title: str
    css: str
    href: str | None
    waited: tuple[float, float]  # created (or first created) .. started
    ran: tuple[float, float] | None  # started .. finished (or now)


def waterfall(summary: FamilySummary, base: str, now: float | None = None) -> Markup:
    """The SVG for ``summary``; ``base`` prefixes the links to job pages."""
    now = time.time() if now is None else now
    ordered = tree_order(summary.members)
    rows = (
        [_member_row(m, base, now) for m in ordered]
        if len(ordered) <= ROWS
        else _group_rows(ordered, now)
    )
    start = min((r.waited[0] for r in rows), default=now)
    end = max((max(r.waited[1], r.ran[1] if r.ran else 0.0) for r in rows), default=now)
    span = max(end - start, 0.001)
    plot = WIDTH - LABEL - 10
    height = TOP + ROW * len(rows) + BOTTOM

    def x(at: float) -> float:
        return LABEL + plot * (at - start) / span

    parts = [
        f'<svg class="waterfall" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="timeline of {len(ordered)} jobs">'
    ]
    for tick in range(5):
        at = start + span * tick / 4
        xx = x(at)
        parts.append(
            f'<line class="grid" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{height - BOTTOM}"/>'
        )
        anchor = "end" if tick == 4 else "middle"  # the last one would overflow the right edge
        parts.append(
            f'<text class="tick" x="{xx:.1f}" y="{height - 8}" text-anchor="{anchor}">'
            f"{_seconds(at - start)}</text>"
        )
    for i, row in enumerate(rows):
        y = TOP + ROW * i
        label = f'<text class="label" x="4" y="{y + 12}">{escape(row.label)}</text>'
        if row.href:
            label = f'<a href="{escape(row.href)}">{label}</a>'
        parts.append(f'<g class="row {row.css}"><title>{escape(row.title)}</title>{label}')
        w0, w1 = x(row.waited[0]), x(row.waited[1])
        parts.append(f'<line class="wait" x1="{w0:.1f}" x2="{max(w1, w0 + 1):.1f}" '
                     f'y1="{y + 8}" y2="{y + 8}"/>')  # fmt: skip
        if row.ran is not None:
            r0, r1 = x(row.ran[0]), x(row.ran[1])
            parts.append(
                f'<rect class="run" x="{r0:.1f}" y="{y + 3}" width="{max(r1 - r0, 2):.1f}" '
                f'height="{ROW - 6}" rx="2"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def tree_order(members: list[Member]) -> list[Member]:
    """Each member after its parent, its children in creation order, and each heir
    right after its predecessor's family."""
    by_id = {m.job.id: m for m in members}
    children: dict[str, list[Member]] = defaultdict(list)
    heirs: dict[str, list[Member]] = defaultdict(list)
    tops: list[Member] = []
    for m in members[1:]:
        if m.job.predecessor_id in by_id:
            heirs[m.job.predecessor_id or ""].append(m)
        elif m.job.parent_id in by_id:
            children[m.job.parent_id or ""].append(m)
        else:
            tops.append(m)  # its link lies beyond what was read
    ordered: list[Member] = []
    stack = [*reversed(tops), members[0]] if members else []
    while stack:  # iterative: heir chains may be longer than the recursion limit
        member = stack.pop()
        ordered.append(member)
        # Visited next: its children, then its heirs (so after everything below it).
        stack.extend(reversed(heirs[member.job.id]))
        stack.extend(reversed(children[member.job.id]))
    return ordered


def _member_row(member: Member, base: str, now: float) -> _Row:
    job = member.job
    created = _epoch(job.created_at) or now
    started = _epoch(job.started_at)
    finished = _epoch(job.finished_at)
    waited_until = started or finished or now
    ran = (started, finished or now) if started else None
    name = job.type.rsplit(".", 1)[-1]
    role = " (heir)" if job.predecessor_id else ""
    return _Row(
        label=f"{'  ' * member.depth}{name} {job.id[:8]}…{job.id[-4:]}{role}",
        title=f"{job.type} {job.id}: {job.state.value}, attempt {job.attempt}",
        css=f"state-{job.state.value}",
        href=f"{base}/jobs/{job.id}",
        waited=(created, max(waited_until, created)),
        ran=ran,
    )


def _group_rows(members: list[Member], now: float) -> list[_Row]:
    groups: dict[tuple[int, str], list[Job]] = defaultdict(list)
    for m in members:
        groups[(m.depth, m.job.type)].append(m.job)
    rows = []
    for (depth, type_name), jobs in groups.items():  # in tree order of first member
        created = [_epoch(j.created_at) or now for j in jobs]
        started = [s for j in jobs if (s := _epoch(j.started_at))]
        finished = [(_epoch(j.finished_at) or now) for j in jobs if j.started_at]
        states: dict[str, int] = defaultdict(int)
        for job in jobs:
            states[job.state.value] += 1
        worst = next(
            (s for s in ("failed", "cancelled", "running", "queued", "waiting") if states.get(s)),
            "succeeded",
        )
        summary = ", ".join(f"{n:,} {s}" for s, n in sorted(states.items()))
        name = type_name.rsplit(".", 1)[-1]
        rows.append(
            _Row(
                label=f"{'  ' * depth}{name} \N{MULTIPLICATION SIGN} {len(jobs):,}",
                title=f"{type_name} at level {depth}: {summary}; bar: the middle 80% of their runs",
                css=f"state-{worst}",
                href=None,
                waited=(min(created), max(finished or created)),
                ran=(_percentile(started, 0.1), _percentile(finished, 0.9)) if started else None,
            )
        )
    return rows


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def _epoch(at: object) -> float | None:
    stamp = getattr(at, "timestamp", None)
    return float(stamp()) if stamp is not None else None


def _seconds(value: float) -> str:
    if value < 10:
        return f"{value:.2f} s"
    if value < 600:
        return f"{value:.0f} s"
    return f"{value / 60:.0f} min"
