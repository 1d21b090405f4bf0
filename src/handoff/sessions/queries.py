"""Reads of a session's work log and artifacts, and the contexts built on them.

Thin on purpose: the paged log's reads are in ``log_reads.py`` (a window of a selection, the newest entries of
several selections, an entry by id); this module says which selections each route and context needs and shapes
the answer. The contexts list at most the newest :data:`CONTEXT_LIST_LIMIT` of each list (api.md, "Sessions
without a size limit"); the counters and the paged routes give the rest.
"""

from __future__ import annotations

from typing import Any, Literal

from handoff import clock
from handoff.plans import service as plans
from handoff.plans import views as plan_views
from handoff.sessions import context_answers, log_reads, store, views
from handoff.sessions.log_reads import Selection
from handoff.sessions.models import CONTEXT_LIST_LIMIT, ArtifactAction, EntryType
from handoff.sessions.paging import ALL, Kind
from handoff.sessions.schemas import (
    Artifact,
    HandoffContext,
    McpContext,
    ReplayContext,
    WorkLogEntry,
)

Order = Literal["asc", "desc"]

#: The scalar fields the contexts show besides the lists: the Session body's, and the last checkpoint.
_CONTEXT_FIELDS = {**store.SESSION_PROJECTION, "last_checkpoint": 1}

_RECENT = Selection("work_log")
_ARTIFACTS = Selection("artifacts")
_NOTABLE = {
    "checkpoints": Selection("work_log", EntryType.CHECKPOINT.value),
    "decisions": Selection("work_log", EntryType.DECISION.value),
    "errors": Selection("work_log", EntryType.ERROR.value),
}
_BY_ACTION = {action.value: Selection("artifacts", action.value) for action in ArtifactAction}


async def work_log_page(
    workspace_id: str,
    session_id: str,
    *,
    entry_type: EntryType | None,
    offset: int,
    limit: int,
    order: Order,
    id_prefix: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> tuple[list[WorkLogEntry], int]:
    """One page of the work log (optionally of one type, of ids with a prefix, after/before an entry) and how
    many entries match."""
    selection = Selection("work_log", entry_type.value if entry_type else ALL, id_prefix=id_prefix)
    entries, total = await log_reads.page(
        workspace_id,
        session_id,
        selection,
        offset=offset,
        limit=limit,
        descending=order == "desc",
        after=after,
        before=before,
    )
    return views.work_log_entries(entries), total


async def artifacts_page(
    workspace_id: str,
    session_id: str,
    *,
    action: ArtifactAction | None,
    has_blob: bool = False,
    offset: int = 0,
    limit: int = 1000,
) -> tuple[list[Artifact], int]:
    """The session's artifacts in recorded order (optionally of one action, or only those with content), a page
    of them, and how many there are."""
    selection = Selection("artifacts", action.value if action else ALL, with_blob=has_blob)
    entries, total = await log_reads.page(workspace_id, session_id, selection, offset=offset, limit=limit)
    return views.artifacts(entries), total


async def get_entry(workspace_id: str, session_id: str, kind: Kind, entry_id: str) -> dict[str, Any]:
    """One stored entry (work log or artifact) by id, or 404."""
    return await log_reads.find_entry(workspace_id, session_id, kind, entry_id)


async def recent_actions(workspace_id: str, session_id: str, *, limit: int) -> list[WorkLogEntry]:
    """The newest entries, newest first."""
    _, lists = await log_reads.newest(workspace_id, session_id, {"recent": (_RECENT, limit)}, {"status": 1})
    return views.work_log_entries(reversed(lists["recent"]))


async def handoff_answer(workspace_id: str, session_id: str) -> dict[str, Any]:
    """What the next agent needs first (context, notes, the newest 20 entries, artifacts, plan progress), as the
    JSON-ready data of a :class:`HandoffContext` (``context_answers.py`` says why not the model)."""
    view, lists = await log_reads.newest(
        workspace_id,
        session_id,
        {"recent": (_RECENT, views.RECENT_ACTIONS), "artifacts": (_ARTIFACTS, CONTEXT_LIST_LIMIT)},
        _CONTEXT_FIELDS,
    )
    plan = await plans.find_plan(workspace_id, view.get("plan"))
    return context_answers.handoff_context({**view, **lists}, plan_views.plan_with_progress(plan) if plan else None)


async def handoff_context(workspace_id: str, session_id: str) -> HandoffContext:
    """:func:`handoff_answer` as its model."""
    return HandoffContext.model_validate(await handoff_answer(workspace_id, session_id))


async def replay_view(workspace_id: str, session_id: str, *, with_lists: bool) -> dict[str, Any]:
    """The fields a replay context (``with_lists``) or a replay needs; ``last_entry`` is the newest entry."""
    wanted: dict[str, tuple[Selection, int]] = {"recent": (_RECENT, views.RECENT_ACTIONS if with_lists else 1)}
    if with_lists:
        wanted |= {name: (selection, CONTEXT_LIST_LIMIT) for name, selection in _NOTABLE.items()}
        wanted |= {name: (selection, CONTEXT_LIST_LIMIT) for name, selection in _BY_ACTION.items()}
        wanted["artifacts"] = (_ARTIFACTS, CONTEXT_LIST_LIMIT)
    view, lists = await log_reads.newest(workspace_id, session_id, wanted, _CONTEXT_FIELDS)
    view["last_entry"] = lists["recent"][-1] if lists["recent"] else None
    if with_lists:
        view["artifacts_by_action"] = {name: [item["path"] for item in lists.pop(name)] for name in _BY_ACTION}
    return {**view, **lists}


async def replay_answer(workspace_id: str, session_id: str) -> dict[str, Any]:
    """Everything needed to continue the session from its last checkpoint, as the JSON-ready data of a
    :class:`ReplayContext` (``context_answers.py`` says why not the model)."""
    view = await replay_view(workspace_id, session_id, with_lists=True)
    plan = await plans.find_plan(workspace_id, view.get("plan"))
    return context_answers.replay_context(view, plan_views.plan_summary(plan) if plan else None, clock.now())


async def replay_context(workspace_id: str, session_id: str) -> ReplayContext:
    """:func:`replay_answer` as its model."""
    return ReplayContext.model_validate(context_answers.decoded(await replay_answer(workspace_id, session_id)))


async def mcp_context(workspace_id: str, session_id: str) -> McpContext:
    """The compact context an MCP client reads."""
    return views.mcp_context(await store.load(workspace_id, session_id), clock.now())
