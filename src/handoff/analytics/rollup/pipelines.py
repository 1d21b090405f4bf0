"""The rollup's pipelines, as pure stage lists: a session's pending change per path, and the route's answer.

A session's *pending change* for a path is what its artifacts (open page and sealed pages) count now minus its
``rollup_snapshot``, the share the day documents already hold: touches and actions subtract, ``sessions`` is
``(touches now > 0) - (touches then > 0)``. The pass folds it into the day documents; the route adds it, read
live, for the dirty sessions of its window, so day documents plus pending changes are always the whole answer.

A window's whole UTC months come from the month documents, its other whole UTC days from the day documents (plus,
for both, the pending changes of the dirty sessions started then); the part of a day at either edge of a window
that does not start or end at midnight is read live from its sessions, exactly as the reference pipeline
(``handoff.analytics.pipelines.artifacts``) reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.analytics.expressions import Pipeline, Stage, Window, count_if, is_, window_conditions
from handoff.analytics.pipelines import not_hidden
from handoff.analytics.rollup.models import ACTIONS, COUNTERS, DAY, MONTH
from handoff.sessions.models import LogPage, Session
from handoff.sessions.paging import ALL

ARTIFACTS = "artifacts"
ONE_DAY = timedelta(days=1)
#: The counters a snapshot holds per path (``sessions`` follows from ``touches``).
SNAPSHOT_COUNTERS = ("touches", *ACTIONS)


def day_of(instant: datetime) -> datetime:
    """Midnight (UTC) of the day an instant falls on: the day document a session's artifacts count in."""
    instant = instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)
    return datetime(instant.year, instant.month, instant.day, tzinfo=UTC)


def month_of(day: datetime) -> datetime:
    """Midnight (UTC) of the first day of the month a day falls in."""
    return day.replace(day=1)


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


@dataclass(frozen=True, slots=True)
class Split:
    """A window cut into its whole UTC days (``days``; ``None``: no whole day), those of them that make whole
    months (``months``, read from month documents; ``None``: none), the days around those (``day_ranges``, read
    from day documents), and the parts of days at its edges (``edges``, read live from the sessions)."""

    days: Window | None
    edges: list[Window]
    months: Window | None = None
    day_ranges: tuple[Window, ...] = ()


def _whole_months(days: Window) -> tuple[Window | None, tuple[Window, ...]]:
    """The whole months inside a window of whole days, and the day ranges before and after them."""
    first = None if days.since is None else month_of(days.since)
    if first is not None and days.since is not None and first < days.since:
        first = _next_month(first)
    last = None if days.until is None else month_of(days.until)
    if first is not None and last is not None and first >= last:
        return None, (days,)
    around = []
    if first is not None and first != days.since:
        around.append(Window(since=days.since, until=first))
    if last is not None and last != days.until:
        around.append(Window(since=last, until=days.until))
    return Window(since=first, until=last), tuple(around)


def split(window: Window) -> Split:
    """Cut a window at the midnights and the first days of months inside it (all time is whole months)."""
    first = None if window.since is None else day_of(window.since)
    if first is not None and window.since is not None and first < window.since:
        first += ONE_DAY
    last = None if window.until is None else day_of(window.until)
    if first is not None and last is not None and first >= last:  # no whole day in the window
        return Split(days=None, edges=[window])
    edges = []
    if first is not None and window.since is not None and first != window.since:
        edges.append(Window(since=window.since, until=first))
    if last is not None and window.until is not None and last != window.until:
        edges.append(Window(since=last, until=window.until))
    days = Window(since=first, until=last)
    months, day_ranges = _whole_months(days)
    return Split(days=days, edges=edges, months=months, day_ranges=day_ranges)


def _path_and_action(entries: Any) -> dict[str, Any]:
    return {"$map": {"input": entries, "in": {"path": "$$this.path", "action": "$$this.action"}}}


def _by_session_and_path() -> Stage:
    """One row per (session, path) of rows that are either an artifact (``{path, action}``) or a snapshot line
    (``{path, old: {touches, created, ...}}``): the counts now, and ``old_*`` as the snapshot has them."""
    return {
        "$group": {
            "_id": {"session_id": "$session_id", "path": "$row.path"},
            "head": {"$first": "$head"},
            "touches": count_if({"$eq": [{"$type": "$row.action"}, "string"]}),
            **{action: count_if(is_("row.action", action)) for action in ACTIONS},
            **{f"old_{name}": {"$sum": f"$row.old.{name}"} for name in SNAPSHOT_COUNTERS},
        }
    }


def _present(field: str) -> dict[str, Any]:
    return {"$cond": [{"$gt": [f"${field}", 0]}, 1, 0]}


#: From a row of :func:`_by_session_and_path` to its path's pending change, in the day documents' shape.
_PENDING_CHANGE: Stage = {
    "$project": {
        "_id": 0,
        "path": "$_id.path",
        **{name: {"$subtract": [f"${name}", f"$old_{name}"]} for name in SNAPSHOT_COUNTERS},
        "sessions": {"$subtract": [_present("touches"), _present("old_touches")]},
    }
}


#: Whether a session has artifacts on sealed pages (a session stored before the paged log has none).
HAS_PAGES = {f"sealed.{ARTIFACTS}.{ALL}": {"$gt": 0}}
NO_PAGES = {f"sealed.{ARTIFACTS}.{ALL}": {"$not": {"$gt": 0}}}


def dirty_sessions(workspace_id: str, window: Window, *, paged: bool, limit: int | None = None) -> Pipeline:
    """Per (session, path) of the workspace's dirty sessions started in the window, those with sealed artifact
    pages (``paged``) or those without: the counts now and as the snapshot has them, with the session's ``head``
    (key, start, the counters the pass guards on). A dirty session with neither artifacts nor snapshot gives one
    row with a null path, so the pass still clears its flag. Only the sessions with pages look them up (a lookup
    per session would cost more than all the rest).

    Run it on the sessions collection with ``hint=ROLLUP_DIRTY_INDEX`` and at snapshot read concern (a seal moves
    artifacts from the open page to a page: both must be read at one point in time)."""
    lookup: Pipeline = [
        {
            "$lookup": {
                "from": LogPage.Settings.name,
                "localField": "session_id",
                "foreignField": "session_id",
                # Not the pages below its ``pages_from``: a clear's leftovers still being purged (``purges.py``).
                "let": {"first": {"$ifNull": [f"$pages_from.{ARTIFACTS}", 0]}},
                "pipeline": [
                    {
                        "$match": {
                            "workspace_id": workspace_id,
                            "kind": ARTIFACTS,
                            "$expr": {"$gte": ["$no", "$$first"]},
                        }
                    },
                    {"$project": {"_id": 0, "entries": _path_and_action("$entries")}},
                ],
                "as": "pages",
            }
        }
    ]
    conditions = HAS_PAGES if paged else NO_PAGES
    return [
        {"$match": {"workspace_id": workspace_id, "rollup_dirty": True, **conditions, **window_conditions(window)}},
        *([{"$limit": limit}] if limit is not None else []),
        *(lookup if paged else []),
        {
            "$project": {
                "_id": 0,
                "session_id": 1,
                "head": {
                    "_id": "$_id",
                    "started_at": "$started_at",
                    "artifact_count": "$artifact_count",
                    "appended": "$appended.artifacts",
                },
                "row": {
                    "$concatArrays": [
                        _path_and_action({"$ifNull": [f"${ARTIFACTS}", []]}),
                        {
                            "$reduce": {
                                "input": {"$ifNull": ["$pages.entries", []]},  # no lookup: no pages
                                "initialValue": [],
                                "in": {"$concatArrays": ["$$value", "$$this"]},
                            }
                        },
                        {
                            "$map": {
                                "input": {"$ifNull": ["$rollup_snapshot", []]},
                                "in": {"path": "$$this.path", "old": "$$this"},
                            }
                        },
                    ]
                },
            }
        },
        {"$unwind": {"path": "$row", "preserveNullAndEmptyArrays": True}},
        _by_session_and_path(),
    ]


def _live(workspace_id: str, window: Window, hidden: Sequence[Mapping[str, Any]]) -> Pipeline:
    """Per path, what the sessions started in the window count now, read from their documents and pages: the
    reference pipeline's reads, for the parts of days at a window's edges (``hidden``: the pages still to purge)."""
    return [
        {"$match": {"workspace_id": workspace_id, "artifact_count": {"$gt": 0}, **window_conditions(window)}},
        {"$project": {"_id": 0, "session_id": 1, "row": _path_and_action(f"${ARTIFACTS}")}},
        {"$unwind": "$row"},
        {
            "$unionWith": {
                "coll": LogPage.Settings.name,
                "pipeline": [
                    {
                        "$match": {
                            "workspace_id": workspace_id,
                            "kind": ARTIFACTS,
                            **window_conditions(window),
                            **not_hidden(hidden),
                        }
                    },
                    {"$project": {"_id": 0, "session_id": 1, "row": _path_and_action("$entries")}},
                    {"$unwind": "$row"},
                ],
            }
        },
        _by_session_and_path(),
        _PENDING_CHANGE,  # no snapshot lines: the change from nothing, i.e. the counts now
    ]


def _periods(parts: Split) -> list[dict[str, Any]]:
    """The conditions on the day and month documents that cover the window's whole days."""
    found = [] if parts.months is None else [{"period": MONTH, **window_conditions(parts.months, "day")}]
    return found + [{"period": DAY, **window_conditions(days, "day")} for days in parts.day_ranges]


#: Per path, the sum of each counter over the rows before it.
_BY_PATH: Stage = {"$group": {"_id": "$path", **{name: {"$sum": f"${name}"} for name in COUNTERS}}}


def counted_paths(workspace_id: str, parts: Split, *, hidden: Sequence[Mapping[str, Any]] = ()) -> Pipeline:
    """Per path, what the window's month and day documents hold plus what its edges count now (read live): run on
    the day documents' collection. The dirty sessions' pending change comes apart (:func:`pending_paths`), in the
    same snapshot."""
    periods = _periods(parts)
    match: dict[str, Any] = {"workspace_id": workspace_id}
    if not periods:
        match["_id"] = {"$exists": False}  # no whole day: the day documents give nothing
    elif len(periods) == 1:
        match |= periods[0]
    else:
        match["$or"] = periods
    sessions = Session.Settings.name
    return [
        {"$match": match},
        {"$project": {"_id": 0, "path": 1, **dict.fromkeys(COUNTERS, 1)}},
        *({"$unionWith": {"coll": sessions, "pipeline": _live(workspace_id, edge, hidden)}} for edge in parts.edges),
        _BY_PATH,
    ]


def pending_paths(workspace_id: str, days: Window, *, paged: bool) -> Pipeline:
    """Per path, the pending change of the dirty sessions started in the window's whole days: run on the sessions
    collection with ``hint=ROLLUP_DIRTY_INDEX`` (a ``$unionWith`` cannot take a hint, and the planner, left to
    itself, walks a whole-workspace index instead of the few dirty sessions)."""
    return [*dirty_sessions(workspace_id, days, paged=paged), _PENDING_CHANGE, _BY_PATH]


def top(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most touched paths of per-path rows (``_id`` the path) from several sources, summed, in the
    reference pipeline's order (most touches first, then by path)."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["_id"] is None:
            continue
        total = totals.setdefault(row["_id"], dict.fromkeys(COUNTERS, 0))
        for name in COUNTERS:
            total[name] += row[name]
    ranked = sorted(
        ((path, total) for path, total in totals.items() if total["touches"] > 0),
        key=lambda item: (-item[1]["touches"], item[0]),
    )
    return [{"path": path, **total} for path, total in ranked[:limit]]
