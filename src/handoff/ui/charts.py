"""The analytics page's charts as geometry: pure functions from figures to the rectangles and labels of an SVG.

The templates only draw what these return, so every chart is rendered on the server (no chart library, no
script) and tested without a browser. Horizontal positions are percentages of the chart's width and vertical
ones pixels, so a chart fills any screen while its text keeps the page's size (a scaled ``viewBox`` would
shrink the labels on a phone and blow them up on a wide screen). Charts are readable without colour: each bar
carries its number as text (and a ``<title>``), each series has its own chart, title and pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from handoff import clock
from handoff.analytics.schemas import ActivityBucket

#: Above this many columns the per-bar numbers would overlap: the chart keeps them in ``<title>`` and the table.
MAX_LABELLED_COLUMNS = 16
#: The most columns an activity chart draws; a longer span is cut to its newest buckets.
MAX_COLUMNS = 400


@dataclass(frozen=True, slots=True)
class Column:
    x: float  # % of the width
    y: float  # px
    width: float  # % of the width
    height: float  # px
    value: int
    label: str  # "2026-12-01: 14"


@dataclass(frozen=True, slots=True)
class ColumnChart:
    """Columns over time for one series."""

    series: str
    total: int
    columns: list[Column]
    height: int
    baseline: float
    peak: int
    first: str
    last: str

    @property
    def labelled(self) -> bool:
        return len(self.columns) <= MAX_LABELLED_COLUMNS


def filled_buckets(
    items: Sequence[ActivityBucket],
    *,
    step: timedelta,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> list[ActivityBucket]:
    """Every bucket of the window (from its start, or the first bucket, to its end, or now), empty ones as zeros.

    The route leaves empty buckets out; a chart over time must show them, or a quiet week would vanish. At most
    :data:`MAX_COLUMNS`, the newest.
    """
    by_start = {clock.as_utc(item.bucket_start): item for item in items}
    if since is None and not by_start:
        return []
    start = _floor(since if since is not None else min(by_start), step)
    end = _floor(clock.as_utc(until) - timedelta(microseconds=1) if until is not None else now, step)
    end = max([end, *by_start])
    count = int((end - start) / step) + 1
    if count > MAX_COLUMNS:
        start, count = end - step * (MAX_COLUMNS - 1), MAX_COLUMNS
    empty = {"started": 0, "completed": 0, "failed": 0}
    return [
        by_start.get(at) or ActivityBucket(bucket_start=at, **empty) for at in (start + step * n for n in range(count))
    ]


def _floor(value: datetime, step: timedelta) -> datetime:
    value = clock.as_utc(value)
    if step >= timedelta(days=1):
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(minute=0, second=0, microsecond=0)


def column_chart(
    series: str, points: Sequence[tuple[datetime, int]], *, hourly: bool, height: int = 170
) -> ColumnChart:
    """One series as columns: the tallest reaches the top, a zero is a hairline so the day still shows."""
    top, bottom = 22.0, 22.0  # room for the numbers above and the dates below
    plot = height - top - bottom
    peak = max((value for _, value in points), default=0)
    slot = 100 / max(1, len(points))
    fmt = "%m-%d %H:00" if hourly else "%Y-%m-%d"
    columns = []
    for n, (at, value) in enumerate(points):
        bar = plot * value / peak if peak else 0.0
        bar = max(bar, 1.0)
        columns.append(
            Column(
                x=round(n * slot + slot * 0.12, 3),
                y=round(top + plot - bar, 2),
                width=round(slot * 0.76, 3),
                height=round(bar, 2),
                value=value,
                label=f"{at:{fmt}}: {value}",
            )
        )
    return ColumnChart(
        series=series,
        total=sum(value for _, value in points),
        columns=columns,
        height=height,
        baseline=top + plot,
        peak=peak,
        first=f"{points[0][0]:{fmt}}" if points else "",
        last=f"{points[-1][0]:{fmt}}" if points else "",
    )


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    text: str  # the figure as words, drawn after the bar: "82 % (41 of 50 ended)"
    y: float  # px
    width: float  # % of the chart's width


@dataclass(frozen=True, slots=True)
class BarList:
    """Horizontal bars, one a row, each with its label above it and its figure after it."""

    rows: list[Row]
    height: int
    bar_height: int


ROW_HEIGHT = 44
BAR_HEIGHT = 16


def bar_list(items: Sequence[tuple[str, float, str]], *, scale: float | None = None) -> BarList:
    """``(label, value, text)`` rows; bars are ``value / scale`` of the room left for them (scale: the largest)."""
    room = 60.0  # % of the width; the rest of the row holds the figure's text
    largest = scale if scale is not None else max((value for _, value, _ in items), default=0.0)
    rows = [
        Row(
            label=label,
            text=text,
            y=n * ROW_HEIGHT,
            width=round(max(1.0, room * value / largest) if largest else 1.0, 2),
        )
        for n, (label, value, text) in enumerate(items)
    ]
    return BarList(rows=rows, height=max(ROW_HEIGHT, len(rows) * ROW_HEIGHT), bar_height=BAR_HEIGHT)
