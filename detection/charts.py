"""Server-rendered SVG charts: coordinates computed here, drawn by the template with <polyline> and <rect>. No
JavaScript, no library, nothing fetched at run time (the CSP allows none of that anyway)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#b8860b", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037", "#455a64",
           "#ad1457")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above `value` (axis tops people can read)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def short_number(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


@dataclass
class Line:
    label: str
    colour: str
    values: list[float]
    total: float
    points: str = ""

    @property
    def swatch(self) -> str:
        """The legend's class for this line's colour (kw-swatch--<index in PALETTE>, static/keyward/admin.css)."""
        return f"kw-swatch--{PALETTE.index(self.colour)}"


@dataclass
class LineChart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    days: list[date]
    lines: list[Line]
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(line.total for line in self.lines)

    @property
    def bottom(self) -> int:
        return self.top + self.plot_height

    @property
    def right(self) -> int:
        return self.left + self.plot_width

    def rows(self) -> list[tuple[date, list[float]]]:
        """The same figures as a table (for screen readers and for copying)."""
        return [(day, [line.values[i] for line in self.lines]) for i, day in enumerate(self.days)]


def line_chart(days: list[date], series: list[tuple[str, list[float]]], *, width: int = 640, height: int = 220
               ) -> LineChart:
    """One polyline per series over the days (values aligned with `days`)."""
    left, top, right_pad, bottom_pad = 48, 10, 10, 24
    chart = LineChart(width, height, left, top, width - left - right_pad, height - top - bottom_pad, days, [])
    peak = nice_ceiling(max((v for _, values in series for v in values), default=0))
    step_x = chart.plot_width / max(1, len(days) - 1)

    def xy(i: int, value: float) -> str:
        return f"{left + i * step_x:.1f},{chart.bottom - value / peak * chart.plot_height:.1f}"

    for n, (label, values) in enumerate(series):
        line = Line(label, PALETTE[n % len(PALETTE)], values, sum(values))
        line.points = " ".join(xy(i, v) for i, v in enumerate(values))
        chart.lines.append(line)
    chart.y_ticks = [(chart.bottom - f * chart.plot_height, short_number(peak * f)) for f in (0, 0.25, 0.5, 0.75, 1)]
    every = max(1, len(days) // 6)
    chart.x_ticks = [(left + i * step_x, day.strftime("%b %d")) for i, day in enumerate(days) if i % every == 0]
    return chart


@dataclass
class Bar:
    label: str
    href: str
    total: float
    width: float
    y: float
    colour: str
    spark: str


@dataclass
class BarChart:
    width: int
    height: int
    label_width: int
    bars: list[Bar]
    row: int


def bar_chart(rows: list[tuple[str, str, list[float]]], *, width: int = 640, row: int = 26) -> BarChart:
    """Horizontal bars of each row's total, with a sparkline of its daily values beside it."""
    label_width, spark_width, gap = 220, 120, 8
    bar_space = width - label_width - spark_width - 3 * gap - 60
    peak = max((sum(values) for _, _, values in rows), default=0) or 1
    bars = []
    for n, (label, href, values) in enumerate(rows):
        total = sum(values)
        top = n * row
        spark_peak = max(values, default=0) or 1
        step = spark_width / max(1, len(values) - 1)
        x0 = width - spark_width
        spark = " ".join(f"{x0 + i * step:.1f},{top + row - 4 - v / spark_peak * (row - 8):.1f}"
                         for i, v in enumerate(values))
        bars.append(Bar(label, href, total, max(1.0, total / peak * bar_space), top + 4, PALETTE[n % len(PALETTE)],
                        spark))
    return BarChart(width, max(row, row * len(rows)), label_width, bars, row)
