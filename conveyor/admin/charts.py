"""Server-rendered SVG line charts with axes: no JavaScript, no chart library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 24


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its name (legend and tooltips), CSS class (colour) and values."""

    name: str
    css: str
    values: Sequence[int]


def nice_scale(value: float) -> tuple[int, int]:
    """The top of the y axis and its tick step: whole steps of 1, 2 or 5 (x 10^k,
    and 25 x 10^k), at most four of them, reaching at least ``value`` (and 4)."""
    if value <= 4:
        return 4, 1
    rough = value / 4
    magnitude = 10 ** math.floor(math.log10(rough))
    steps = (1, 2, 2.5, 5, 10) if magnitude >= 10 else (1, 2, 5, 10)
    step = next(int(f * magnitude) for f in steps if f * magnitude >= rough)
    return math.ceil(value / step) * step, step


def line_chart(title: str, minutes: Sequence[datetime], series: Sequence[Series]) -> Markup:
    """A chart of per-minute values, one line per series, oldest minute on the left."""
    count = max(len(minutes), 2)
    top, step = nice_scale(max((v for s in series for v in s.values), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + plot_w * i / (count - 1)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for value in range(0, top + 1, step):  # horizontal grid lines with their values
        yy = y(value)
        parts.append(_line("grid", LEFT, WIDTH - RIGHT, yy, yy))
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{value:,}</text>'
        )
    for i, minute in enumerate(minutes):  # a time label every ten minutes
        if minute.minute % 10 == 0:
            xx = x(i)
            parts.append(_line("axis", xx, xx, TOP + plot_h, TOP + plot_h + 4))
            parts.append(
                f'<text class="tick" x="{xx:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                f"{minute:%H:%M}</text>"
            )
    parts.append(_line("axis", LEFT, WIDTH - RIGHT, TOP + plot_h, TOP + plot_h))
    parts.append(_line("axis", LEFT, LEFT, TOP, TOP + plot_h))
    for s in series:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(f'<polyline class="line {escape(s.css)}" points="{points}"/>')
        for i, v in enumerate(s.values):
            if v:
                label = f"{minutes[i]:%H:%M} {s.name}: {v}"
                parts.append(
                    f'<circle class="dot {escape(s.css)}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5">'
                    f"<title>{escape(label)}</title></circle>"
                )
    parts.append("</svg>")
    return Markup("".join(parts))


def _line(css: str, x1: float, x2: float, y1: float, y2: float) -> str:
    return f'<line class="{css}" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}"/>'
