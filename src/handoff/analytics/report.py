"""``handoff stats``: the summary and per-agent figures of workspaces, gathered by the service, as rich tables."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from handoff.analytics import service
from handoff.analytics.expressions import Window
from handoff.analytics.schemas import AgentList, Summary
from handoff.workspaces import service as workspaces


@dataclass(frozen=True, slots=True)
class WorkspaceStats:
    """One workspace's figures."""

    slug: str
    summary: Summary
    agents: AgentList


async def gather(workspace_slug: str | None, window: Window) -> list[WorkspaceStats]:
    """The figures of one workspace (by slug; unknown: 404) or of every workspace, by slug."""
    found = [await workspaces.get_workspace(workspace_slug)] if workspace_slug else await workspaces.list_workspaces()
    return [
        WorkspaceStats(
            slug=workspace.slug,
            summary=await service.summary(workspace.workspace_id, window=window),
            agents=await service.agents(workspace.workspace_id, window=window),
        )
        for workspace in found
    ]


def _window_text(window: Window) -> str:
    if window.since is None:
        return "all sessions"
    return f"sessions started since {window.since.isoformat(timespec='seconds')}"


def summary_table(stats: WorkspaceStats) -> Table:
    """Totals, statuses, agent types, durations and counters, one figure a row."""
    summary = stats.summary
    table = Table("figure", "value")
    table.columns[1].justify = "right"
    table.add_row("sessions", str(summary.sessions.total))
    for status, count in summary.sessions.by_status.items():
        table.add_row(f"  {status}", str(count))
    for agent_type, count in summary.sessions.by_agent_type.items():
        table.add_row(f"  agent {agent_type}", str(count))
    durations = summary.duration_minutes
    table.add_row("duration avg (min)", f"{durations.avg:.2f}")
    table.add_row("duration p50 (min)", str(durations.p50))
    table.add_row("duration p95 (min)", str(durations.p95))
    for name in ("actions", "errors", "checkpoints", "artifacts"):
        table.add_row(name, str(getattr(summary, name)))
    return table


def agents_table(stats: WorkspaceStats) -> Table:
    """One row per agent type, most sessions first."""
    table = Table(
        "agent type", "sessions", "completed", "failed", "success", "avg min", "avg actions", "errors",
    )  # fmt: skip
    for column in table.columns[1:]:
        column.justify = "right"
    for agent in stats.agents.items:
        table.add_row(
            agent.agent_type or "unknown",
            str(agent.sessions),
            str(agent.completed),
            str(agent.failed),
            f"{agent.success_rate:.0%}",
            f"{agent.avg_duration_minutes:.2f}",
            f"{agent.avg_actions:.2f}",
            str(agent.errors),
        )
    return table


def render(found: list[WorkspaceStats], window: Window) -> Group:
    """A heading and both tables for each workspace."""
    parts: list[RenderableType] = []
    for stats in found:
        parts += [
            Text(f"{stats.slug}: {_window_text(window)}", style="bold"),
            summary_table(stats),
            agents_table(stats),
        ]
    return Group(*parts)
