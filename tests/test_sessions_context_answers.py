"""The handoff and replay contexts, shaped without a model per entry (``sessions/context_answers.py``), answer the
very bytes the previous path did: every entry validated into its Pydantic model, the context model encoded by
Litestar.

The previous path is rebuilt here as it was, as the reference, from the same stored view the route reads
(``queries.replay_view`` and the handoff context's lists); the route's body must equal its encoding byte for
byte, key order included. The sessions cover what changes the shape of an entry or a list: sealed notable
entries (pages of four), more than 200 of each notable type, action and typed entries, entries and artifacts
with a blob and without, ``data`` absent and present (with an integer BSON stores as int64), entries erased by
id from sealed pages and the open page, a plan, handoff notes, a final summary, and a session still in the old
layout (one document, never migrated).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import httpx
from litestar import Litestar
from litestar.serialization import encode_json, get_serializer

from handoff import clock
from handoff.db import MongoDatabase
from handoff.plans import service as plans
from handoff.plans import views as plan_views
from handoff.sessions import log_reads, newest_notables, queries, views
from handoff.sessions.schemas import (
    ActionEntry,
    Artifact,
    ArtifactsByAction,
    HandoffContext,
    ReplayContext,
    TypedEntry,
    WorkLogEntry,
)
from tests.api import Api, ok
from tests.factories import small_pages_app
from tests.test_sessions_legacy import make_legacy

TYPES = ["checkpoint", "decision", "info", "error", "checkpoint", "decision", "error", "warning"]
Doc = Mapping[str, Any]


app = small_pages_app()


# The previous path, as it was -------------------------------------------------------------------------------


def _typed(entries: Iterable[Doc]) -> list[TypedEntry]:
    return [TypedEntry.model_validate({**entry, "data": entry.get("data") or {}}) for entry in entries]


def _work_log(entries: Iterable[Doc]) -> list[WorkLogEntry]:
    return [ActionEntry.model_validate(e) if "action" in e else _typed([e])[0] for e in entries]


def _artifacts(entries: Iterable[Doc]) -> list[Artifact]:
    return [Artifact.model_validate(entry) for entry in entries]


def previous_replay_context(view: Doc, plan: Any, now: datetime) -> ReplayContext:
    checkpoint = view.get("last_checkpoint")
    total = view.get("action_count", 0)
    return ReplayContext(
        session_id=view["session_id"],
        status=view["status"],
        agent_type=view.get("agent_type"),
        plan=plan,
        started_at=view["started_at"],
        last_active_at=view["last_active_at"],
        duration=views.duration_text(views.duration_minutes(view.get("started_at"), view.get("ended_at"), now)),
        context_summary=view.get("context_summary"),
        progress_summary=views.progress_summary(
            total=total,
            checkpoints=view.get("checkpoint_count", 0),
            errors=view.get("error_count", 0),
            last_entry=view.get("last_entry"),
        ),
        last_checkpoint=_typed([checkpoint])[0] if checkpoint else None,
        checkpoints=_typed(view.get("checkpoints", [])),
        decisions=_typed(view.get("decisions", [])),
        errors=_typed(view.get("errors", [])),
        artifacts=_artifacts(view.get("artifacts", [])),
        artifacts_by_action=ArtifactsByAction.model_validate(view["artifacts_by_action"]),
        recent_actions=_work_log(reversed(view.get("recent", []))),
        total_actions=total,
        handoff_notes=view.get("handoff_notes"),
        final_summary=view.get("final_summary"),
    )


def previous_handoff_context(view: Doc, plan: Any) -> HandoffContext:
    return HandoffContext(
        session_id=view["session_id"],
        agent_type=view.get("agent_type"),
        started_at=view["started_at"],
        last_active_at=view["last_active_at"],
        context_summary=view.get("context_summary"),
        recent_actions=_work_log(reversed(view.get("recent", []))),
        artifacts=_artifacts(view.get("artifacts", [])),
        handoff_notes=view.get("handoff_notes"),
        plan=plan,
    )


def aware(value: Any) -> Any:
    """``value`` with its dates aware, as the previous path decoded them (the contexts' reads now decode them naive,
    ``store.as_stored``)."""
    if isinstance(value, datetime):
        assert value.tzinfo is None
        return value.replace(tzinfo=UTC)
    if isinstance(value, dict):
        return {key: aware(item) for key, item in value.items()}
    if isinstance(value, list):
        return [aware(item) for item in value]
    return value


async def previous_answers(app: Litestar, workspace_id: str, session_id: str) -> tuple[bytes, bytes]:
    """Both contexts' bodies as the previous path encoded them, from the same reads the routes make but for the
    session's newest notables (``newest_notables.py``), read around: the lists from the notable documents."""
    with mock.patch.object(newest_notables, "read", mock.AsyncMock(return_value=None)):
        view = aware(await queries.replay_view(workspace_id, session_id, with_lists=True))
    plan = await plans.find_plan(workspace_id, view.get("plan"))
    replay = previous_replay_context(view, plan_views.plan_summary(plan) if plan else None, clock.now())
    head, lists = await log_reads.newest(
        workspace_id,
        session_id,
        {"recent": (queries._RECENT, views.RECENT_ACTIONS), "artifacts": (queries._ARTIFACTS, 200)},
        queries._CONTEXT_FIELDS,
    )
    handoff = previous_handoff_context(aware({**head, **lists}), plan_views.plan_with_progress(plan) if plan else None)
    serializer = get_serializer(app.type_encoders)
    return encode_json(replay, serializer), encode_json(handoff, serializer)


async def assert_same_bytes(api: Api, app: Litestar, session_id: str) -> dict[str, Any]:
    replay, handoff = await previous_answers(app, api.tenant.workspace.workspace_id, session_id)
    for path, previous in (("replay-context", replay), ("handoff-context", handoff)):
        response = await api.call("GET", f"/{session_id}/{path}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.content == previous, path
    # The MCP tools read the same data as its model: equal to the previous path's model too.
    model = await queries.replay_context(api.tenant.workspace.workspace_id, session_id)
    assert encode_json(model, get_serializer(app.type_encoders)) == replay
    body: dict[str, Any] = ok(await api.call("GET", f"/{session_id}/replay-context"))
    return body


# The sessions -----------------------------------------------------------------------------------------------


async def blob(api: Api, session_id: str) -> str:
    response = await api.call("POST", f"/{session_id}/blobs", content=b"diff", headers={"Content-Type": "text/plain"})
    return str(ok(response, 201)["blob_id"])


async def grow(api: Api, session_id: str, count: int, blob_id: str) -> None:
    for start in range(0, count, 100):
        entries: list[dict[str, Any]] = []
        for n in range(start, min(count, start + 100)):
            entry: dict[str, Any] = {"id": f"e{n:04d}", "message": f"step {n} ✓", "type": TYPES[n % len(TYPES)]}
            if n % 3 == 0:
                entry["data"] = {"n": n, "big": 2**40 + n, "nested": {"ok": n % 2 == 0, "f": n / 7, "none": None}}
            if n % 11 == 0:
                entry["blob_id"] = blob_id
            entries.append(entry)
        await api.post(session_id, "work-log/batch", {"entries": entries}, 201)


async def test_a_long_sealed_session_answers_the_previous_bytes(
    api: Api, app: Litestar, client: httpx.AsyncClient
) -> None:
    plan = await client.post("/v1/plans", json={"slug": "ship", "title": "Ship it"}, headers=api.tenant.headers)
    assert plan.status_code == 201, plan.text
    sid = (await api.create(agent_type="coder", plan="ship", context_summary={"goal": "g", "n": 2**40}))["session_id"]
    blob_id = await blob(api, sid)
    await grow(api, sid, 1000, blob_id)
    for n in range(12):
        body: dict[str, Any] = {
            "id": f"f{n}",
            "path": f"src/{n}.py",
            "action": ("created", "modified", "deleted")[n % 3],
        }
        if n % 4 == 0:
            body |= {"blob_id": blob_id, "metadata": {"lines": n}}
        await api.post(sid, "artifacts", body, 201)
    await api.post(sid, "actions", {"id": "a1", "action": "ran pytest", "details": {"passed": 3}}, 201)
    await api.post(sid, "actions", {"id": "a2", "action": "pushed", "blob_id": blob_id}, 201)
    await api.post(sid, "work-log", {"id": "last", "message": "done for now", "type": "checkpoint"}, 201)
    # Erasures: notable entries in sealed pages (the oldest and among the newest 200), an open-page entry, artifacts.
    for entry_id in ("e0000", "e0001", "e0900", "e0901", "e0902", "e0999", "a1"):
        assert (await api.call("DELETE", f"/{sid}/work-log/{entry_id}")).status_code == 204
    assert (await api.call("DELETE", f"/{sid}/artifacts/f1")).status_code == 204

    answer = await assert_same_bytes(api, app, sid)
    assert [len(answer[name]) for name in ("checkpoints", "decisions", "errors")] == [200, 200, 200]
    assert answer["plan"] == {"slug": "ship", "title": "Ship it", "current_phase": None}
    listed = answer["checkpoints"] + answer["decisions"] + answer["errors"]
    assert {"e0900", "e0901", "e0902"}.isdisjoint(entry["id"] for entry in listed)
    assert any("blob_id" in entry for entry in answer["checkpoints"])

    await api.post(sid, "handoff", {"summary": "over to you", "next_steps": ["review"]})
    await assert_same_bytes(api, app, sid)
    await api.post(sid, "resume")
    await api.post(sid, "complete", {"summary": "shipped"})
    assert (await assert_same_bytes(api, app, sid))["final_summary"] == "shipped"


async def test_a_new_and_an_empty_session_answer_the_previous_bytes(api: Api, app: Litestar) -> None:
    empty = (await api.create())["session_id"]
    assert (await assert_same_bytes(api, app, empty))["progress_summary"]["summary"] == "No work recorded"
    sid = (await api.create(agent_type="coder"))["session_id"]
    await api.post(sid, "actions", {"action": "looked around"}, 201)
    await api.post(sid, "work-log", {"message": "noted", "type": "decision", "data": {"why": "because"}}, 201)
    await assert_same_bytes(api, app, sid)


async def test_an_old_layout_session_answers_the_previous_bytes(
    api: Api, app: Litestar, database: MongoDatabase
) -> None:
    sid = (await api.create(agent_type="coder", context_summary={"goal": "g"}))["session_id"]
    await grow(api, sid, 300, await blob(api, sid))
    await api.post(sid, "actions", {"id": "a1", "action": "ran pytest", "details": None}, 201)
    await api.post(sid, "artifacts", {"id": "f0", "path": "src/a.py", "action": "created"}, 201)
    legacy = await make_legacy(database, sid)
    assert "pages_version" not in legacy
    answer = await assert_same_bytes(api, app, sid)
    assert len(answer["checkpoints"]) == 75
    assert (await database["sessions"].find_one({"session_id": sid}, {"pages_version": 1})) == {"_id": legacy["_id"]}
