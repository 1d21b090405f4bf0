"""The analytics aggregation pipelines, as pure stage lists.

Every pipeline starts with a ``$match`` on ``workspace_id`` (plus the ``started_at`` window) that an index of
``Session.Settings.indexes`` serves:

- ``summary``, ``agents`` and ``activity`` read only per-session scalars and are covered by ``analytics_rollup``
  (no document is fetched); ``artifacts`` filters on its ``artifact_count`` key before fetching;
- ``errors`` walks the partial index ``analytics_with_errors`` (sessions whose ``error_count`` is positive), most
  recently active first, and the sealed pages holding errors;
- ``stale`` walks ``idle_by_status`` longest idle first, ``handoffs`` the partial ``waiting_handoffs`` longest
  waiting first, a keyset page at a time, probing ``lineage`` once per candidate (``handoff.claims.waiting``);
- ``lineage`` follows ``replayed_from`` with ``$graphLookup`` over ``workspace_session_unique`` and ``lineage``.

Percentiles are computed in the pipeline without ``$percentile`` (MongoDB 7.0+): the durations are pushed into one
array, sorted with ``$sortArray`` (5.2+) and picked by nearest rank, so the same pipeline runs on 6.0, 7 and 8.
Nothing here touches the database; ``service.py`` runs these lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from handoff.analytics.expressions import (
    ENDED,
    MINUTE_MS,
    PERCENTILES,
    UNKNOWN_AGENT,
    Bucket,
    Pipeline,
    Stage,
    Window,
    bucket_start,
    count_if,
    is_,
    match_sessions,
    nearest_rank,
    pairs_to_object,
    round2,
    window_conditions,
)
from handoff.claims import waiting
from handoff.sessions.models import ArtifactAction, EntryType, LogPage, Session, SessionStatus


def _fold_by_status_and_agent(**accumulators: Any) -> Stage:
    """The one pass over the sessions that ``summary`` and ``agents`` make: one row per (status, agent type).

    Plain field paths and ``$sum``/``$push`` only, so MongoDB runs it in its slot-based engine over the covered
    index scan; the stages after it work on at most (statuses x agent types) rows.
    """
    return {
        "$group": {
            "_id": {"status": "$status", "agent_type": "$agent_type"},
            "sessions": {"$sum": 1},
            **accumulators,
        }
    }


def _sum_of(*fields: str) -> dict[str, Any]:
    return {field: {"$sum": f"${field}"} for field in fields}


def summary(workspace_id: str, window: Window) -> Pipeline:
    """One row: totals, counts by status and agent type, counter sums, and duration avg/p50/p95 of ended sessions.

    ``duration_minutes`` is set when a session ends (by the API and by the importer) and only then, so the
    durations are those of the completed and failed rows.
    """
    counters = {"actions": "action_count", "errors": "error_count", "checkpoints": "checkpoint_count"}
    counters["artifacts"] = "artifact_count"
    return [
        match_sessions(workspace_id, window),
        _fold_by_status_and_agent(
            **{name: {"$sum": f"${field}"} for name, field in counters.items()},
            durations={"$push": "$duration_minutes"},
        ),
        {
            "$facet": {
                "by_status": [{"$group": {"_id": "$_id.status", "count": {"$sum": "$sessions"}}}],
                "by_agent_type": [
                    {"$group": {"_id": {"$ifNull": ["$_id.agent_type", UNKNOWN_AGENT]}, "count": {"$sum": "$sessions"}}}
                ],
                "totals": [{"$group": {"_id": None, "total": {"$sum": "$sessions"}, **_sum_of(*counters)}}],
                "durations": [
                    {"$match": {"_id.status": {"$in": ENDED}}},
                    {"$unwind": "$durations"},
                    {"$match": {"durations": {"$type": "number"}}},
                    {"$group": {"_id": None, "values": {"$push": "$durations"}}},
                    {"$project": {"_id": 0, "values": {"$sortArray": {"input": "$values", "sortBy": 1}}}},
                    {
                        "$project": {
                            "avg": round2({"$avg": "$values"}),
                            **{f"p{percent}": nearest_rank("$values", percent) for percent in PERCENTILES},
                        }
                    },
                ],
            }
        },
        {
            "$project": {
                "by_status": pairs_to_object("by_status"),
                "by_agent_type": pairs_to_object("by_agent_type"),
                "totals": {"$first": "$totals"},
                "duration_minutes": {"$first": "$durations"},
            }
        },
    ]


def agents(workspace_id: str, window: Window) -> Pipeline:
    """One row per agent type, most sessions first.

    ``success_rate`` is completed / (completed + failed), over ended sessions only (active and paused sessions
    have no outcome yet), 0 when none has ended; ``avg_duration_minutes`` averages the ended sessions and
    ``avg_actions`` all of them; averages are rounded to two decimals, 0 when there is nothing to average.
    """
    ended = {"$add": ["$completed", "$failed"]}

    def sessions_if(status: str) -> dict[str, Any]:
        return count_if(is_("_id.status", status), "$sessions")

    return [
        match_sessions(workspace_id, window),
        _fold_by_status_and_agent(
            actions={"$sum": "$action_count"},
            errors={"$sum": "$error_count"},
            minutes={"$sum": "$duration_minutes"},
        ),
        {
            "$group": {
                "_id": "$_id.agent_type",
                "sessions": {"$sum": "$sessions"},
                "completed": sessions_if(SessionStatus.COMPLETED.value),
                "failed": sessions_if(SessionStatus.FAILED.value),
                **_sum_of("actions", "errors", "minutes"),
            }
        },
        {
            "$project": {
                "_id": 0,
                "agent_type": "$_id",
                "sessions": 1,
                "completed": 1,
                "failed": 1,
                "success_rate": {"$cond": [{"$gt": [ended, 0]}, round2({"$divide": ["$completed", ended]}), 0]},
                "avg_duration_minutes": {"$cond": [{"$gt": [ended, 0]}, round2({"$divide": ["$minutes", ended]}), 0]},
                "avg_actions": round2({"$divide": ["$actions", "$sessions"]}),
                "errors": 1,
            }
        },
        {"$sort": {"sessions": -1, "agent_type": 1}},
    ]


def activity(workspace_id: str, window: Window, bucket: Bucket) -> Pipeline:
    """Per UTC hour or day: sessions started (by ``started_at``), completed and failed (by ``ended_at``), oldest
    bucket first; buckets with nothing in them are left out.

    The window selects sessions by ``started_at``; a selected session's end counts in the bucket of its
    ``ended_at``. The first ``$group`` folds sessions into (start bucket, end bucket, status) rows, so the
    ``$unwind`` into start and end events runs over a few thousand rows at most, not over every session.
    """
    end_event = {
        "t": "$_id.ended",
        "started": 0,
        "completed": {"$cond": [is_("_id.status", SessionStatus.COMPLETED.value), "$n", 0]},
        "failed": {"$cond": [is_("_id.status", SessionStatus.FAILED.value), "$n", 0]},
    }
    has_ended = {"$and": [{"$in": ["$_id.status", ENDED]}, {"$ne": ["$_id.ended", None]}]}
    return [
        match_sessions(workspace_id, window),
        {
            "$group": {
                "_id": {
                    "started": bucket_start("started_at", bucket),
                    "ended": bucket_start("ended_at", bucket),
                    "status": "$status",
                },
                "n": {"$sum": 1},
            }
        },
        {
            "$project": {
                "_id": 0,
                "events": {
                    "$concatArrays": [
                        [{"t": "$_id.started", "started": "$n", "completed": 0, "failed": 0}],
                        {"$cond": [has_ended, [end_event], []]},
                    ]
                },
            }
        },
        {"$unwind": "$events"},
        {
            "$group": {
                "_id": "$events.t",
                "started": {"$sum": "$events.started"},
                "completed": {"$sum": "$events.completed"},
                "failed": {"$sum": "$events.failed"},
            }
        },
        {"$sort": {"_id": 1}},
        {"$project": {"_id": 0, "bucket_start": "$_id", "started": 1, "completed": 1, "failed": 1}},
    ]


#: The index ``artifacts`` must read through (pass it as the aggregate's ``hint``): it reads whole documents, and
#: in ``started_at`` order (about the order sessions were inserted in) the reads are sequential, where the
#: planner's pick of ``workspace_session_unique`` (random ``sess_<uuid4>`` order) costs three times as much.
ARTIFACTS_INDEX = "analytics_rollup"


def not_hidden(hidden: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The condition that leaves out the pages a purge has still to delete (``sessions.purges.hidden``)."""
    return {"$nor": list(hidden)} if hidden else {}


def _sealed_pages(
    workspace_id: str, window: Window, kind: str, hidden: Sequence[Mapping[str, Any]], **conditions: Any
) -> Pipeline:
    """The start of a ``$unionWith`` branch over the sealed pages of one kind in the window, one row per entry.

    A page carries its session's ``started_at``, so the window applies without a lookup; entries still on a
    session's open page (every entry of a small session) are read by the branch over ``sessions``. ``hidden``:
    the leftovers of cleared logs and erased sessions still being purged.
    """
    return [
        {
            "$match": {
                **match_sessions(workspace_id, window)["$match"],
                "kind": kind,
                **conditions,
                **not_hidden(hidden),
            }
        },
        {"$project": {"_id": 0, "session_id": 1, "entry": "$entries"}},
        {"$unwind": "$entry"},
    ]


def artifacts(workspace_id: str, window: Window, limit: int, *, hidden: Sequence[Mapping[str, Any]] = ()) -> Pipeline:
    """The most touched paths: touches, touches by action, and how many distinct sessions touched each path.

    The open pages of the sessions in the window and their sealed artifact pages, one row per artifact, then one
    group. Run it with ``hint=ARTIFACTS_INDEX``.
    """
    return [
        match_sessions(workspace_id, window, artifact_count={"$gt": 0}),
        {"$project": {"_id": 0, "session_id": 1, "entry": "$artifacts"}},
        {"$unwind": "$entry"},
        {
            "$unionWith": {
                "coll": LogPage.Settings.name,
                "pipeline": _sealed_pages(workspace_id, window, "artifacts", hidden),
            }
        },
        {
            "$group": {
                "_id": "$entry.path",
                "touches": {"$sum": 1},
                **{action.value: count_if(is_("entry.action", action.value)) for action in ArtifactAction},
                "sessions": {"$addToSet": "$session_id"},
            }
        },
        {"$sort": {"touches": -1, "_id": 1}},
        {"$limit": limit},
        {
            "$project": {
                "_id": 0,
                "path": "$_id",
                "touches": 1,
                **dict.fromkeys((action.value for action in ArtifactAction), 1),
                "sessions": {"$size": "$sessions"},
            }
        },
    ]


def errors(
    workspace_id: str,
    window: Window,
    limit: int,
    *,
    newest_sessions: int | None = None,
    active_since: datetime | None = None,
    hidden: Sequence[Mapping[str, Any]] = (),
) -> Pipeline:
    """The newest error entries of the work logs; only sessions whose ``error_count`` is positive are read, and
    only the sealed pages that hold an error (the partial index ``pages_error``).

    ``newest_sessions`` reads only that many of them, the most recently active first; ``active_since`` only
    those active since then. ``service.errors`` uses both to read a few dozen documents instead of every
    session with errors (an entry is never newer than its session's ``last_active_at``).
    """
    conditions: dict[str, Any] = {"error_count": {"$gt": 0}}
    if active_since is not None:
        conditions["last_active_at"] = {"$gte": active_since}
    newest: Pipeline = []
    if newest_sessions is not None:
        newest = [{"$sort": {"last_active_at": -1}}, {"$limit": newest_sessions}]
    newest_first: Pipeline = [{"$sort": {"entry.timestamp": -1, "session_id": 1, "entry.id": 1}}, {"$limit": limit}]
    since: Pipeline = [] if active_since is None else [{"$match": {"entry.timestamp": {"$gte": active_since}}}]
    is_error = {"entry.type": EntryType.ERROR.value}
    return [
        match_sessions(workspace_id, window, **conditions),
        *newest,
        {
            "$project": {
                "_id": 0,
                "session_id": 1,
                "agent_type": 1,
                "entry": {"$filter": {"input": "$work_log", "cond": {"$eq": ["$$this.type", EntryType.ERROR.value]}}},
            }
        },
        {"$unwind": "$entry"},
        *newest_first,
        {
            "$unionWith": {
                "coll": LogPage.Settings.name,
                "pipeline": [
                    *_sealed_pages(workspace_id, window, "work_log", hidden, **{"counts.error": {"$gt": 0}}),
                    {"$match": is_error},
                    *since,
                    *newest_first,
                    {
                        "$lookup": {
                            "from": Session.Settings.name,
                            "localField": "session_id",
                            "foreignField": "session_id",
                            "pipeline": [{"$match": {"workspace_id": workspace_id}}, {"$project": {"agent_type": 1}}],
                            "as": "session",
                        }
                    },
                    {"$set": {"agent_type": {"$first": "$session.agent_type"}}},
                ],
            }
        },
        *newest_first,
        {
            "$project": {
                "session_id": 1,
                "agent_type": 1,
                "message": "$entry.message",
                "timestamp": "$entry.timestamp",
            }
        },
    ]


def stale(workspace_id: str, window: Window, *, now: datetime, idle_minutes: int, limit: int) -> Pipeline:
    """Active sessions whose ``last_active_at`` is more than ``idle_minutes`` before ``now``, longest idle first."""
    cutoff = now - timedelta(minutes=idle_minutes)
    idle: dict[str, Any] = {"$lt": cutoff}
    if window.since is not None:
        # Implied by the window (a session is never last active before it started), and it bounds the walk of
        # ``idle_by_status``: without it a recent window reads every older idle session's document to check its
        # ``started_at``, which is not a key of that index (6,700 documents at 100,000 sessions, 30 days).
        idle["$gte"] = window.since
    return [
        match_sessions(workspace_id, window, status=SessionStatus.ACTIVE.value, last_active_at=idle),
        {"$sort": {"last_active_at": 1}},
        {"$limit": limit},
        {
            "$project": {
                "_id": 0,
                "session_id": 1,
                "agent_type": 1,
                "last_active_at": 1,
                "idle_minutes": {
                    "$toLong": {"$floor": {"$divide": [{"$subtract": [now, "$last_active_at"]}, MINUTE_MS]}}
                },
            }
        },
    ]


def handoffs(workspace_id: str, window: Window, limit: int) -> Pipeline:
    """The first keyset page of the waiting handoffs no claim marks (``handoff.claims.waiting``, the definition the
    claim search shares), longest waiting first: what the route reads first, and what ``explain`` looks at. The
    route itself runs ``waiting.find``, which adds the handoffs whose claim lapsed and reads further pages when
    some candidates are continued."""
    return waiting.unclaimed_page(workspace_id, window_conditions(window), size=limit)


#: What a lineage row shows of each session found along ``replayed_from``.
_NODE_FIELDS = ("session_id", "status", "agent_type", "started_at", "ended_at", "replayed_from", "depth")


def lineage(workspace_id: str, session_id: str, *, ancestors: bool) -> Pipeline:
    """The session (one row even without relatives) and, one row each, its ancestors (``ancestors``) or its
    descendants, with ``depth`` 1 for a parent or child; ancestors oldest first, descendants nearest first."""
    direction = (
        {"startWith": "$replayed_from", "connectFromField": "replayed_from", "connectToField": "session_id"}
        if ancestors
        else {"startWith": "$session_id", "connectFromField": "session_id", "connectToField": "replayed_from"}
    )
    order = {"node.depth": -1} if ancestors else {"node.depth": 1, "node.started_at": 1, "node.session_id": 1}
    return [
        {"$match": {"workspace_id": workspace_id, "session_id": session_id}},
        {"$project": {"_id": 0, "session_id": 1, "replayed_from": 1}},
        {
            "$graphLookup": {
                "from": "sessions",
                **direction,
                "as": "nodes",
                "depthField": "depth",
                "restrictSearchWithMatch": {"workspace_id": workspace_id},
            }
        },
        {"$unwind": {"path": "$nodes", "preserveNullAndEmptyArrays": True}},
        {
            "$project": {
                "session_id": 1,
                "replayed_from": 1,
                "node": {
                    "$cond": [
                        {"$eq": [{"$type": "$nodes"}, "missing"]},
                        "$$REMOVE",
                        {
                            **{field: f"$nodes.{field}" for field in _NODE_FIELDS},
                            "depth": {"$add": ["$nodes.depth", 1]},
                        },
                    ]
                },
            }
        },
        {"$sort": order},
    ]
