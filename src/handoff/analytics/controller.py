"""The analytics REST routes: parse the window and limits, call one service function."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from litestar import Controller, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter

from handoff.analytics import service
from handoff.analytics.expressions import Bucket
from handoff.analytics.schemas import (
    Activity,
    AgentList,
    ErrorList,
    HandoffList,
    Lineage,
    PathList,
    StaleList,
    Summary,
)
from handoff.auth import CurrentPrincipal
from handoff.openapi import problems

_INSTANT = "An ISO 8601 date or date-time (a date means 00:00 UTC, no offset means UTC). Selects sessions by started_at"
Since = Annotated[
    str | None,
    QueryParameter(description=f"{_INSTANT}, inclusive.", required=False, max_length=64),
]
Until = Annotated[
    str | None,
    QueryParameter(description=f"{_INSTANT}, exclusive; must be after since.", required=False, max_length=64),
]


def _route(path: str, *statuses: int) -> Callable[[Callable[..., Any]], HTTPRouteHandler]:
    """``@get`` with the handler's docstring as the OpenAPI summary (first line) and description (the rest)."""

    def decorate(handler: Callable[..., Any]) -> HTTPRouteHandler:
        summary, _, description = inspect.cleandoc(handler.__doc__ or "").partition("\n")
        return get(path, summary=summary, description=description.strip() or None, responses=problems(*statuses))(
            handler
        )

    return decorate


class AnalyticsController(Controller):
    """Aggregations over the workspace's sessions. Every route takes an optional since/until window on started_at
    (since inclusive, until exclusive; an invalid or inverted window is a 422)."""

    path = "/analytics"
    tags = ["analytics"]

    @_route("/summary")
    async def summary(self, principal: CurrentPrincipal, since: Since = None, until: Until = None) -> Summary:
        """Totals, sessions by status and agent type, and duration avg/p50/p95 of ended sessions.

        Durations are whole minutes of completed and failed sessions; percentiles are by nearest rank. With no
        ended session the duration figures are 0; sessions without an agent type count under "unknown".
        """
        return await service.summary(principal.workspace_id, window=service.parse_window(since, until))

    @_route("/agents")
    async def agents(self, principal: CurrentPrincipal, since: Since = None, until: Until = None) -> AgentList:
        """Per agent type: sessions, completed, failed, success rate, average duration and actions, errors.

        success_rate = completed / (completed + failed): the share of ended sessions that completed (active and
        paused sessions have no outcome yet), 0..1 rounded to two decimals, 0 when none has ended.
        avg_duration_minutes averages the ended sessions (0 when none); avg_actions averages all of them.
        """
        return await service.agents(principal.workspace_id, window=service.parse_window(since, until))

    @_route("/activity")
    async def activity(
        self,
        principal: CurrentPrincipal,
        bucket: Annotated[Bucket, QueryParameter(description="Bucket width, in UTC.")] = Bucket.DAY,
        since: Since = None,
        until: Until = None,
    ) -> Activity:
        """Sessions started (by started_at), completed and failed (by ended_at) per hour or day.

        The window selects sessions by started_at; their ends count in the bucket of ended_at. Buckets are
        oldest first; empty buckets are left out.
        """
        return await service.activity(principal.workspace_id, bucket=bucket, window=service.parse_window(since, until))

    @_route("/artifacts")
    async def artifacts(
        self,
        principal: CurrentPrincipal,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        since: Since = None,
        until: Until = None,
    ) -> PathList:
        """The most touched paths: touches by action and the number of distinct sessions.

        touches counts every artifact record of the path (a session that touched it twice counts twice);
        sessions counts the distinct sessions. Ties are ordered by path. limit is 1..100.
        """
        return await service.artifacts(principal.workspace_id, limit=limit, window=service.parse_window(since, until))

    @_route("/errors")
    async def errors(
        self,
        principal: CurrentPrincipal,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        since: Since = None,
        until: Until = None,
    ) -> ErrorList:
        """The newest error entries of the work logs, newest first.

        Work-log entries of type error of the selected sessions; ties by session_id. limit is 1..200.
        """
        return await service.errors(principal.workspace_id, limit=limit, window=service.parse_window(since, until))

    @_route("/stale")
    async def stale(
        self,
        principal: CurrentPrincipal,
        idle_minutes: Annotated[int, QueryParameter(ge=1, le=525_600, description="Idle for longer than this.")] = 30,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        since: Since = None,
        until: Until = None,
    ) -> StaleList:
        """Active sessions whose last_active_at is older than idle_minutes, longest idle first.

        idle_minutes in each item is the whole minutes since last_active_at. At most limit items (1..1000,
        default 100): the longest idle.
        """
        return await service.stale(
            principal.workspace_id, idle_minutes=idle_minutes, limit=limit, window=service.parse_window(since, until)
        )

    @_route("/handoffs")
    async def handoffs(
        self,
        principal: CurrentPrincipal,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        since: Since = None,
        until: Until = None,
    ) -> HandoffList:
        """Paused sessions with handoff notes that no replay continues yet, longest waiting first.

        A handoff is continued once any session of the workspace has it as replayed_from. Ordered by paused_at
        (sessions without one, paused before it was recorded, come first; paused_since then shows updated_at).
        At most limit items (1..1000, default 100).
        """
        return await service.handoffs(principal.workspace_id, limit=limit, window=service.parse_window(since, until))

    @_route("/lineage/{session_id:str}", 404)
    async def lineage(self, principal: CurrentPrincipal, session_id: FromPath[str]) -> Lineage:
        """Ancestors (oldest first) and descendants of a session along replayed_from.

        A deleted ancestor appears as {"session_id": ..., "deleted": true}; nothing older than it is known.
        """
        return await service.lineage(principal.workspace_id, session_id)
