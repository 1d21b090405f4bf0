"""The Handoffs and Analytics pages: the analytics service's answers, laid out for people.

Analytics runs its six queries together (they are independent aggregations) over a window that starts
:data:`DEFAULT_DAYS` days back unless the form says otherwise. Every pipeline but ``errors`` and ``stale`` costs
in proportion to the sessions started in the window, and ``artifacts`` reads each of their documents, so the
default window is what keeps the first render under 300 ms at 100,000 sessions: a week, not a month (measured in
``docs/benchmarks.md``, "Dashboard pages"); the form and its "All time" link give any other window.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromQuery
from litestar.response import Template

from handoff import clock
from handoff.analytics import service as analytics
from handoff.analytics.expressions import Bucket, Window
from handoff.analytics.schemas import Activity, AgentList, PathList
from handoff.auth import CurrentPrincipal
from handoff.ui import charts, live_parts
from handoff.ui.auth import signed_in
from handoff.ui.render import page

DEFAULT_DAYS = 7
#: A window up to this long is charted by the hour.
HOURLY_UP_TO = timedelta(days=3)
TOP = 10


class InsightPages(Controller):
    """The handoff queue and the analytics charts."""

    path = "/"
    guards = [signed_in]
    include_in_schema = False

    @get("/handoffs")
    async def handoffs(self, request: Request[Any, Any, Any], principal: CurrentPrincipal) -> Template:
        """Paused sessions whose handoff notes wait for the next agent, longest waiting first, and the active claims."""
        board = await live_parts.handoff_board(principal.workspace_id)
        return page(request, "handoffs.html.j2", nav="handoffs", **board)

    @get("/analytics")
    async def analytics_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentPrincipal,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
    ) -> Template:
        """Charts of the window: activity, outcomes and durations per agent, churned files, errors, stale sessions."""
        now = clock.now()
        if since is None and until is None:  # the first visit; an emptied form field means "from the beginning"
            since = (now - timedelta(days=DEFAULT_DAYS - 1)).date().isoformat()
        window = analytics.parse_window(since or None, until or None)
        span = (window.until or now) - window.since if window.since else None
        hourly = span is not None and span <= HOURLY_UP_TO
        workspace_id = principal.workspace_id
        summary, activity, agents, paths, errors, stale = await asyncio.gather(
            analytics.summary(workspace_id, window=window),
            analytics.activity(workspace_id, bucket=Bucket.HOUR if hourly else Bucket.DAY, window=window),
            analytics.agents(workspace_id, window=window),
            analytics.artifacts(workspace_id, limit=TOP, window=window),
            analytics.errors(workspace_id, limit=TOP, window=window),
            analytics.stale(workspace_id, limit=TOP, window=window),
        )
        return page(
            request,
            "analytics.html.j2",
            nav="analytics",
            since=since or "",
            until=until or "",
            summary=summary,
            activity=_activity_charts(activity, window, now=now, hourly=hourly),
            unit="hour" if hourly else "day",
            success=_success_chart(agents),
            durations=_duration_chart(agents),
            agents=agents.items,
            churn=_churn_chart(paths),
            paths=paths.items,
            errors=errors.items,
            stale=stale.items,
        )


def _activity_charts(activity: Activity, window: Window, *, now: Any, hourly: bool) -> list[charts.ColumnChart]:
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    buckets = charts.filled_buckets(activity.items, step=step, since=window.since, until=window.until, now=now)
    return [
        charts.column_chart(series, [(b.bucket_start, getattr(b, series)) for b in buckets], hourly=hourly)
        for series in ("started", "completed", "failed")
    ]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}{'es' if noun.endswith('ch') else 's'}"


def _agent_name(agent_type: str | None) -> str:
    return agent_type or "(no agent type)"


def _success_chart(agents: AgentList) -> charts.BarList:
    rows = []
    for item in agents.items:
        ended = item.completed + item.failed
        text = f"{round(item.success_rate * 100)} % ({item.completed} of {ended} ended)" if ended else "none ended"
        rows.append((_agent_name(item.agent_type), item.success_rate, text))
    return charts.bar_list(rows, scale=1.0)


def _duration_chart(agents: AgentList) -> charts.BarList:
    rows = [
        (_agent_name(item.agent_type), item.avg_duration_minutes, f"{item.avg_duration_minutes:g} min on average")
        for item in agents.items
    ]
    return charts.bar_list(rows)


def _churn_chart(paths: PathList) -> charts.BarList:
    rows = [
        (item.path, float(item.touches), f"{_count(item.touches, 'touch')} in {_count(item.sessions, 'session')}")
        for item in paths.items
    ]
    return charts.bar_list(rows)
