"""The rollup's pipelines, as pure stage lists: a session's pending change per path, and the route's answer.

A session's *pending change* for a path is what its artifacts (open page and sealed pages) count now minus its
``rollup_snapshot``, the share the day documents already hold: touches and actions subtract, ``sessions`` is
``(touches now > 0) - (touches then > 0)``. The pass folds it into the day documents; the route adds it, read
live, for the dirty sessions of its window, so day documents plus pending changes are always the whole answer.

A window's whole UTC days come from the day documents (plus the pending changes); the part of a day at either
edge of a window that does not start or end at midnight is read live from its sessions, exactly as the reference
pipeline (``handoff.analytics.pipelines.artifacts``) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.analytics.expressions import Pipeline, Stage, Window, count_if, is_, window_conditions
from handoff.analytics.rollup.models import ACTIONS, COUNTERS
from handoff.sessions.models import LogPage, Session

ARTIFACTS = "artifacts"
DAY = timedelta(days=1)
#: The counters a snapshot holds per path (``sessions`` follows from ``touches``).
SNAPSHOT_COUNTERS = ("touches", *ACTIONS)


def day_of(instant: datetime) -> datetime:
    """Midnight (UTC) of the day an instant falls on: the day document a session's artifacts count in."""
    instant = instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)
    return datetime(instant.year, instant.month, instant.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Split:
    """A window cut into its whole days (read from the day documents; ``None``: no whole day) and the parts of
    days at its edges (read live)."""

    days: Window | None
    edges: list[Window]


def split(window: Window) -> Split:
    """Cut a window at the midnights inside it (all time is whole days)."""
    first = None if window.since is None else day_of(window.since)
    if first is not None and window.since is not None and first < window.since:
        first += DAY
    last = None if window.until is None else day_of(window.until)
    if first is not None and last is not None and first >= last:  # no whole day in the window
        return Split(days=None, edges=[window])
    edges = []
    if first is not None and window.since is not None and first != window.since:
        edges.append(Window(since=window.since, until=first))
    if last is not None and window.until is not None and last != window.until:
        edges.append(Window(since=last, until=window.until))
    return Split(days=Window(since=first, until=last), edges=edges)


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


def dirty_sessions(workspace_id: str, window: Window, *, limit: int | None = None) -> Pipeline:
    """Per (session, path) of the workspace's dirty sessions started in the window: the counts now and as the
    snapshot has them, with the session's ``head`` (start, the counters the pass guards on). A dirty session
    with neither artifacts nor snapshot gives one row with a null path, so the pass still clears its flag.

    Run it on the sessions collection with ``hint=ROLLUP_DIRTY_INDEX`` and at snapshot read concern (a seal moves
    artifacts from the open page to a page: both must be read at one point in time)."""
    return [
        {"$match": {"workspace_id": workspace_id, "rollup_dirty": True, **window_conditions(window)}},
        *([{"$limit": limit}] if limit is not None else []),
        {
            "$lookup": {
                "from": LogPage.Settings.name,
                "localField": "session_id",
                "foreignField": "session_id",
                "pipeline": [
                    {"$match": {"workspace_id": workspace_id, "kind": ARTIFACTS}},
                    {"$project": {"_id": 0, "entries": _path_and_action("$entries")}},
                ],
                "as": "pages",
            }
        },
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
                                "input": "$pages.entries",
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


def _live(workspace_id: str, window: Window) -> Pipeline:
    """Per path, what the sessions started in the window count now, read from their documents and pages: the
    reference pipeline's reads, for the parts of days at a window's edges."""
    return [
        {"$match": {"workspace_id": workspace_id, "artifact_count": {"$gt": 0}, **window_conditions(window)}},
        {"$project": {"_id": 0, "session_id": 1, "row": _path_and_action(f"${ARTIFACTS}")}},
        {"$unwind": "$row"},
        {
            "$unionWith": {
                "coll": LogPage.Settings.name,
                "pipeline": [
                    {"$match": {"workspace_id": workspace_id, "kind": ARTIFACTS, **window_conditions(window)}},
                    {"$project": {"_id": 0, "session_id": 1, "row": _path_and_action("$entries")}},
                    {"$unwind": "$row"},
                ],
            }
        },
        _by_session_and_path(),
        _PENDING_CHANGE,  # no snapshot lines: the change from nothing, i.e. the counts now
    ]


def _day_conditions(days: Window) -> dict[str, Any]:
    bounds: dict[str, datetime] = {}
    if days.since is not None:
        bounds["$gte"] = days.since
    if days.until is not None:
        bounds["$lt"] = days.until
    return {"day": bounds} if bounds else {}


def top_paths(workspace_id: str, window: Window, limit: int) -> Pipeline:
    """The most touched paths of the window, as the reference pipeline answers it: run on the day documents'
    collection, at snapshot read concern (the pass moves counts from pending changes to day documents)."""
    parts = split(window)
    days = parts.days
    sessions = Session.Settings.name
    sources: Pipeline = []
    if days is not None:
        sources.append(
            {"$unionWith": {"coll": sessions, "pipeline": [*dirty_sessions(workspace_id, days), _PENDING_CHANGE]}}
        )
    sources += [{"$unionWith": {"coll": sessions, "pipeline": _live(workspace_id, edge)}} for edge in parts.edges]
    day_match: dict[str, Any] = {"workspace_id": workspace_id}
    if days is None:
        day_match["_id"] = {"$exists": False}  # no whole day: the day documents give nothing
    else:
        day_match |= _day_conditions(days)
    return [
        {"$match": day_match},
        {"$project": {"_id": 0, "path": 1, **dict.fromkeys(COUNTERS, 1)}},
        *sources,
        {"$group": {"_id": "$path", **{name: {"$sum": f"${name}"} for name in COUNTERS}}},
        {"$match": {"touches": {"$gt": 0}}},
        {"$sort": {"touches": -1, "_id": 1}},
        {"$limit": limit},
        {"$project": {"_id": 0, "path": "$_id", **dict.fromkeys(COUNTERS, 1)}},
    ]
