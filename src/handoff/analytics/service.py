"""Runs the analytics pipelines and shapes their rows; the API and ``handoff stats`` call these functions.

Also parses the ``since``/``until`` window (ISO 8601; a date alone means midnight UTC, an instant without an
offset is UTC) and explains a pipeline's plan, which the tests and the benchmark use to check the indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from handoff import clock
from handoff.analytics import pipelines
from handoff.analytics.expressions import ALL_TIME, Bucket, Pipeline, Window, window_conditions
from handoff.analytics.rollup import pipelines as rollup_pipelines
from handoff.analytics.rollup import worker as rollup_worker
from handoff.analytics.rollup.models import ArtifactDay
from handoff.analytics.schemas import (
    Activity,
    AgentList,
    DeletedSession,
    ErrorList,
    HandoffList,
    Lineage,
    LineageSession,
    PathList,
    StaleList,
    Summary,
    WaitingHandoff,
)
from handoff.claims import waiting
from handoff.errors import FieldError, Invalid, NotFound
from handoff.sessions import purges
from handoff.sessions.models import ROLLUP_DIRTY_INDEX, Session, SessionStatus

#: A runaway analytics query ends with a 503 instead of holding a connection.
MAX_TIME_MS = 30_000


def parse_instant(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 date or date-time as aware UTC; ``None`` stays ``None``; anything else is a 422."""
    if value is None:
        return None
    try:
        return clock.as_utc(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError) as exc:  # OverflowError: an offset that moves it past year 9999
        raise Invalid(
            f"{field} must be an ISO 8601 date or date-time, e.g. 2026-11-24T15:30:00+00:00",
            errors=[FieldError(field=field, message="not an ISO 8601 date or date-time")],
        ) from exc


def parse_window(since: str | None = None, until: str | None = None) -> Window:
    """The ``started_at`` window of ``since`` (inclusive) and ``until`` (exclusive); ``since`` must come first."""
    start, end = parse_instant(since, "since"), parse_instant(until, "until")
    if start is not None and end is not None and start >= end:
        raise Invalid("since must be before until", errors=[FieldError(field="until", message="not after since")])
    return Window(since=start, until=end)


async def _rows(
    pipeline: Pipeline,
    *,
    hint: str | None = None,
    collection: AsyncCollection[dict[str, Any]] | None = None,
    session: AsyncClientSession | None = None,
) -> list[dict[str, Any]]:
    options: dict[str, Any] = {"maxTimeMS": MAX_TIME_MS}
    if hint is not None:
        options["hint"] = hint
    found = Session.get_pymongo_collection() if collection is None else collection
    cursor = await found.aggregate(pipeline, session=session, **options)
    return await cursor.to_list(None)


# Routes --------------------------------------------------------------------------------------------------------


async def summary(workspace_id: str, *, window: Window = ALL_TIME) -> Summary:
    """Totals, counts by status and agent type, counter sums and duration statistics."""
    rows = await _rows(pipelines.summary(workspace_id, window))
    row = rows[0] if rows else {}
    totals = row.get("totals") or {}
    durations = row.get("duration_minutes") or {}
    return Summary.model_validate(
        {
            "sessions": {
                "total": totals.get("total", 0),
                "by_status": {status.value: 0 for status in SessionStatus} | row.get("by_status", {}),
                "by_agent_type": dict(sorted(row.get("by_agent_type", {}).items())),
            },
            "duration_minutes": {
                "avg": durations.get("avg", 0),
                "p50": durations.get("p50") or 0,
                "p95": durations.get("p95") or 0,
            },
            **{name: totals.get(name, 0) for name in ("actions", "errors", "checkpoints", "artifacts")},
        }
    )


async def agents(workspace_id: str, *, window: Window = ALL_TIME) -> AgentList:
    """Per agent type: sessions, outcomes, success rate, averages and errors."""
    return AgentList.model_validate({"items": await _rows(pipelines.agents(workspace_id, window))})


async def activity(workspace_id: str, *, bucket: Bucket = Bucket.DAY, window: Window = ALL_TIME) -> Activity:
    """Started, completed and failed sessions per hour or day."""
    return Activity.model_validate({"items": await _rows(pipelines.activity(workspace_id, window, bucket))})


async def artifacts(workspace_id: str, *, limit: int = 20, window: Window = ALL_TIME) -> PathList:
    """The most touched paths, from the artifacts rollup (``handoff.analytics.rollup``): its day documents plus
    the pending change of the window's dirty sessions, read together at one point in time (a snapshot session),
    so the answer is the reference pipeline's at every moment. A workspace whose old sessions the
    rollup has not marked yet is answered by the reference pipeline."""
    if not await rollup_worker.is_ready(workspace_id):
        return await artifacts_reference(workspace_id, limit=limit, window=window)
    parts = rollup_pipelines.split(window)
    days = ArtifactDay.get_pymongo_collection()
    # One point in time for every read: the pass moves counts from pending changes into the day documents.
    hidden = await purges.hidden(workspace_id, "artifacts")
    async with days.database.client.start_session(snapshot=True) as snapshot:
        counted = rollup_pipelines.counted_paths(workspace_id, parts, hidden=hidden)
        rows = await _rows(counted, collection=days, session=snapshot)
        if parts.days is not None:
            for paged in (False, True):
                pending = rollup_pipelines.pending_paths(workspace_id, parts.days, paged=paged)
                rows += await _rows(pending, hint=ROLLUP_DIRTY_INDEX, session=snapshot)
    return PathList.model_validate({"items": rollup_pipelines.top(rows, limit)})


async def artifacts_reference(workspace_id: str, *, limit: int = 20, window: Window = ALL_TIME) -> PathList:
    """The most touched paths, read from every session document of the window and its sealed pages: the
    definition the rollup's answer is checked against (tests, ``scripts/bench_analytics.py``)."""
    hidden = await purges.hidden(workspace_id, "artifacts")
    rows = await _rows(pipelines.artifacts(workspace_id, window, limit, hidden=hidden), hint=pipelines.ARTIFACTS_INDEX)
    return PathList.model_validate({"items": rows})


async def errors(workspace_id: str, *, limit: int = 50, window: Window = ALL_TIME) -> ErrorList:
    """The newest error entries across the workspace's work logs."""
    return ErrorList.model_validate(
        {"items": await _rows(await errors_pipeline(workspace_id, limit=limit, window=window))}
    )


async def errors_pipeline(workspace_id: str, *, limit: int, window: Window) -> Pipeline:
    """The pipeline that answers ``errors``, bounded by a first cheap read.

    An entry is never newer than its session's ``last_active_at`` (every append sets both in one update). So
    the ``limit`` most recently active sessions with errors give at least ``limit`` entries, the oldest of
    which, ``T``, is no newer than the true ``limit``-th newest entry; every entry of the answer then belongs to
    a session active since ``T``, and only those sessions need reading. With fewer entries than ``limit`` (a
    small workspace) the plain pipeline over every session with errors is as cheap.
    """
    hidden = await purges.hidden(workspace_id, "work_log")
    probe = await _rows(pipelines.errors(workspace_id, window, limit, newest_sessions=limit, hidden=hidden))
    if len(probe) < limit or not isinstance(probe[-1].get("timestamp"), datetime):
        return pipelines.errors(workspace_id, window, limit, hidden=hidden)
    return pipelines.errors(workspace_id, window, limit, active_since=probe[-1]["timestamp"], hidden=hidden)


async def stale(workspace_id: str, *, idle_minutes: int = 30, limit: int = 100, window: Window = ALL_TIME) -> StaleList:
    """Active sessions idle for more than ``idle_minutes``, longest idle first."""
    pipeline = pipelines.stale(workspace_id, window, now=clock.now(), idle_minutes=idle_minutes, limit=limit)
    return StaleList.model_validate({"items": await _rows(pipeline)})


async def handoffs(workspace_id: str, *, limit: int = 100, window: Window = ALL_TIME) -> HandoffList:
    """Paused sessions with handoff notes that no replay continues yet and no claim holds now (the claim search's
    own definition, ``handoff.claims.waiting``: a claim whose lease ran out hides nothing)."""
    found = await waiting.find(
        workspace_id, limit=limit, now=clock.now(), match=window_conditions(window), max_time_ms=MAX_TIME_MS
    )
    return HandoffList(items=[waiting_handoff(item.handoff) for item in found])


def waiting_handoff(handoff: dict[str, Any]) -> WaitingHandoff:
    """A waiting handoff's row."""
    notes = handoff.get("handoff_notes") or {}
    return WaitingHandoff(
        session_id=handoff["session_id"],
        agent_type=handoff.get("agent_type"),
        summary=notes.get("summary") or "",
        next_steps=notes.get("next_steps") or [],
        blockers=notes.get("blockers") or [],
        paused_since=handoff.get("paused_at") or handoff["updated_at"],
    )


async def lineage(workspace_id: str, session_id: str) -> Lineage:
    """Ancestors (oldest first, a deleted one as ``{session_id, deleted: true}``) and descendants of a session."""
    up = await _rows(pipelines.lineage(workspace_id, session_id, ancestors=True))
    if not up:
        raise NotFound(f"session {session_id} not found")
    down = await _rows(pipelines.lineage(workspace_id, session_id, ancestors=False))
    return lineage_view(up, down)


def lineage_view(up: list[dict[str, Any]], down: list[dict[str, Any]]) -> Lineage:
    """Shape the rows of the two lineage pipelines.

    ``$graphLookup`` stops where an id leads nowhere, so a deleted ancestor can only be the one the oldest found
    ancestor (or the session itself) still names in ``replayed_from``.
    """
    root = up[0]
    found = [LineageSession.model_validate(row["node"]) for row in up if "node" in row]
    ancestors: list[DeletedSession | LineageSession] = list(found)
    missing = found[0].replayed_from if found else root.get("replayed_from")
    known = {node.session_id for node in found} | {root["session_id"]}
    if missing and missing not in known:
        ancestors.insert(0, DeletedSession(session_id=missing))
    descendants = [LineageSession.model_validate(row["node"]) for row in down if "node" in row]
    return Lineage(session_id=root["session_id"], ancestors=ancestors, descendants=descendants)


# Plans ---------------------------------------------------------------------------------------------------------


async def route_pipelines(workspace_id: str, *, session_id: str = "", window: Window = ALL_TIME) -> dict[str, Pipeline]:
    """Each route's pipeline with its default parameters (errors: the bounded one; lineage: the ancestors' one),
    for ``explain``."""
    return {
        "summary": pipelines.summary(workspace_id, window),
        "agents": pipelines.agents(workspace_id, window),
        "activity": pipelines.activity(workspace_id, window, Bucket.DAY),
        "artifacts": pipelines.artifacts(workspace_id, window, 20),
        "errors": await errors_pipeline(workspace_id, limit=50, window=window),
        "stale": pipelines.stale(workspace_id, window, now=clock.now(), idle_minutes=30, limit=100),
        "handoffs": pipelines.handoffs(workspace_id, window, 100),
        "lineage": pipelines.lineage(workspace_id, session_id, ancestors=True),
    }


@dataclass(frozen=True, slots=True)
class PlanVerdict:
    """What ``explain`` says about the first stage of a pipeline."""

    stages: list[str]
    indexes: list[str]
    docs_examined: int
    keys_examined: int

    @property
    def uses_index(self) -> bool:
        return bool(self.indexes) and "COLLSCAN" not in self.stages

    @property
    def covered(self) -> bool:
        """Answered from the index alone: no document fetched."""
        return self.uses_index and "FETCH" not in self.stages and self.docs_examined == 0


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every dict nested anywhere in an explain document."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def plan_verdict(explained: dict[str, Any]) -> PlanVerdict:
    """Read an ``explain`` (classic or slot-based engine, any verbosity) into stage names, indexes and counts."""
    stages: list[str] = []
    indexes: list[str] = []
    for winning in (d["winningPlan"] for d in _walk(explained) if isinstance(d.get("winningPlan"), dict)):
        for node in _walk(winning.get("queryPlan", winning)):
            if isinstance(node.get("stage"), str):
                stages.append(node["stage"])
            if isinstance(node.get("indexName"), str) and node["indexName"] not in indexes:
                indexes.append(node["indexName"])
    # The query's own counters, plus what each $lookup stage read (reported on the stage itself).
    stats = [d["executionStats"] for d in _walk(explained) if isinstance(d.get("executionStats"), dict)]
    stats += [stage for stage in explained.get("stages", []) if "totalDocsExamined" in stage]
    return PlanVerdict(
        stages=stages,
        indexes=indexes,
        docs_examined=sum(int(d.get("totalDocsExamined", 0)) for d in stats),
        keys_examined=sum(int(d.get("totalKeysExamined", 0)) for d in stats),
    )


async def explain(pipeline: Pipeline, *, hint: str | None = None) -> PlanVerdict:
    """Run the pipeline under ``explain`` (executionStats) and read its plan."""
    collection = Session.get_pymongo_collection()
    command: dict[str, Any] = {"aggregate": collection.name, "pipeline": pipeline, "cursor": {}}
    if hint is not None:
        command["hint"] = hint
    explained = await collection.database.command({"explain": command, "verbosity": "executionStats"})
    return plan_verdict(explained)
