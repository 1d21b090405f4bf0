"""Reads of a session's arrays and the contexts built on them, computed inside MongoDB.

Nothing here loads a whole array into Python: pages are ``$slice``/``$filter`` projections, recent actions a
negative ``$slice``, checkpoints/decisions/errors ``$filter`` expressions. The handoff and replay contexts do
not even make MongoDB walk the log: they read the copies each append keeps (``recent_entries``,
``notable_entries``), and only a session stored before those existed is answered from ``work_log`` (``$cond``
evaluates one branch). The cost of a read grows with what it returns, not with the length of the log.
"""

from __future__ import annotations

from typing import Any, Literal

from handoff import clock
from handoff.plans import service as plans
from handoff.plans import views as plan_views
from handoff.sessions import store, views
from handoff.sessions.models import ArtifactAction, EntryType
from handoff.sessions.schemas import (
    Artifact,
    HandoffContext,
    McpContext,
    ReplayContext,
    WorkLogEntry,
)

Order = Literal["asc", "desc"]

#: The scalar fields the contexts show besides the arrays: the Session body's, and the last checkpoint.
_CONTEXT_FIELDS = {**store.SESSION_PROJECTION, "last_checkpoint": 1}


def _of_type(entry_type: EntryType, source: str = "$work_log") -> dict[str, Any]:
    return {"$filter": {"input": source, "cond": {"$eq": ["$$this.type", entry_type.value]}}}


def _artifacts_with(action: ArtifactAction) -> dict[str, Any]:
    return {"$filter": {"input": "$artifacts", "cond": {"$eq": ["$$this.action", action.value]}}}


def _paths_by_action() -> dict[str, Any]:
    """``{created, modified, deleted}``: each the paths of the artifacts with that action, in recorded order."""
    return {
        action.value: {"$map": {"input": _artifacts_with(action), "in": "$$this.path"}} for action in ArtifactAction
    }


def _kept(lists: Any, log: Any) -> dict[str, Any]:
    """``lists`` (from the copies the appends keep) when the session has them complete, else ``log``."""
    return {"$cond": [{"$eq": ["$context_lists", True]}, lists, log]}


_RECENT = _kept("$recent_entries", {"$slice": ["$work_log", -views.RECENT_ACTIONS]})


async def work_log_page(
    workspace_id: str,
    session_id: str,
    *,
    entry_type: EntryType | None,
    offset: int,
    limit: int,
    order: Order,
) -> tuple[list[WorkLogEntry], int]:
    """One page of the work log (optionally of one type) and how many entries match."""
    source: Any = _of_type(entry_type) if entry_type else "$work_log"
    if order == "desc":
        source = {"$reverseArray": source}
    pipeline = [
        {"$match": store.key(workspace_id, session_id)},
        {"$project": {"_id": 0, "entries": source}},
        {"$project": {"total": {"$size": "$entries"}, "items": {"$slice": ["$entries", offset, limit]}}},
    ]
    rows = await (await store.sessions().aggregate(pipeline)).to_list(1)
    if not rows:
        raise store.not_found(session_id)
    return views.work_log_entries(rows[0]["items"]), rows[0]["total"]


async def recent_actions(workspace_id: str, session_id: str, *, limit: int) -> list[WorkLogEntry]:
    """The newest entries, newest first; up to the window's size they come from ``recent_entries``."""
    from_log = {"$slice": ["$work_log", -limit]}
    recent = _kept({"$slice": ["$recent_entries", -limit]}, from_log) if limit <= views.RECENT_ACTIONS else from_log
    doc = await store.load(workspace_id, session_id, {"_id": 0, "recent": recent})
    return views.work_log_entries(reversed(doc.get("recent") or []))


async def list_artifacts(workspace_id: str, session_id: str, *, action: ArtifactAction | None) -> list[Artifact]:
    """The session's artifacts in recorded order, optionally of one action."""
    selected: Any = "$artifacts"
    if action is not None:
        selected = _artifacts_with(action)
    doc = await store.load(workspace_id, session_id, {"_id": 0, "items": selected})
    return views.artifacts(doc.get("items") or [])


async def handoff_context(workspace_id: str, session_id: str) -> HandoffContext:
    """What the next agent needs first: context, notes, the newest 20 entries, artifacts, plan progress."""
    view = await store.load(
        workspace_id,
        session_id,
        {**_CONTEXT_FIELDS, "_id": 0, "artifacts": 1, "recent": _RECENT},
    )
    plan = await plans.find_plan(workspace_id, view.get("plan"))
    return views.handoff_context(view, plan_views.plan_with_progress(plan) if plan else None)


async def replay_view(workspace_id: str, session_id: str, *, with_lists: bool) -> dict[str, Any]:
    """The fields a replay context (``with_lists``) or a replay needs, computed on the server."""
    projection: dict[str, Any] = {
        **_CONTEXT_FIELDS,
        "_id": 0,
        "last_entry": _kept({"$last": "$recent_entries"}, {"$last": "$work_log"}),
    }
    if with_lists:
        projection |= {
            "artifacts": 1,
            "artifacts_by_action": _paths_by_action(),
            "recent": _RECENT,
            **{
                name: _kept(_of_type(entry_type, "$notable_entries"), _of_type(entry_type))
                for name, entry_type in (
                    ("checkpoints", EntryType.CHECKPOINT),
                    ("decisions", EntryType.DECISION),
                    ("errors", EntryType.ERROR),
                )
            },
        }
    return await store.load(workspace_id, session_id, projection)


async def replay_context(workspace_id: str, session_id: str) -> ReplayContext:
    """Everything needed to continue the session from its last checkpoint."""
    view = await replay_view(workspace_id, session_id, with_lists=True)
    plan = await plans.find_plan(workspace_id, view.get("plan"))
    return views.replay_context(view, plan_views.plan_summary(plan) if plan else None, clock.now())


async def mcp_context(workspace_id: str, session_id: str) -> McpContext:
    """The compact context an MCP client reads."""
    return views.mcp_context(await store.load(workspace_id, session_id), clock.now())
