"""The context lists: the copies of the newest and the notable work-log entries that every append keeps.

The handoff and replay contexts read them instead of the whole ``work_log`` (their cost must not grow with the
log). A session stored before they existed has no ``context_lists`` mark and is answered from ``work_log``;
both ways must give the same answer.
"""

from __future__ import annotations

from typing import Any

import httpx

from handoff.db import MongoDatabase
from handoff.sessions import views
from tests.factories import Tenant

TYPES = ["info", "checkpoint", "info", "decision", "error", "warning", "success"]


async def _session_with_log(client: httpx.AsyncClient, tenant: Tenant, entries: int) -> str:
    created = await client.post("/v1/sessions", json={"agent_type": "coder"}, headers=tenant.headers)
    session_id: str = created.json()["session_id"]
    batch = [
        {"id": f"b{n}", "message": f"batch step {n}", "type": TYPES[n % len(TYPES)], "data": {"n": n}}
        for n in range(entries - 5)
    ]
    response = await client.post(
        f"/v1/sessions/{session_id}/work-log/batch", json={"entries": batch}, headers=tenant.headers
    )
    assert response.status_code == 201
    for n in range(5):  # single appends too, and an action entry among them
        if n == 2:
            body: dict[str, Any] = {"id": f"a{n}", "action": "edit_file", "details": {"path": "x.py"}}
            response = await client.post(f"/v1/sessions/{session_id}/actions", json=body, headers=tenant.headers)
        else:
            body = {"id": f"s{n}", "message": f"single {n}", "type": TYPES[n], "data": {"single": n}}
            response = await client.post(f"/v1/sessions/{session_id}/work-log", json=body, headers=tenant.headers)
        assert response.status_code == 201
    await client.post(
        f"/v1/sessions/{session_id}/artifacts", json={"path": "x.py", "action": "created"}, headers=tenant.headers
    )
    return session_id


async def _contexts(client: httpx.AsyncClient, tenant: Tenant, session_id: str) -> tuple[Any, Any]:
    handoff = (await client.get(f"/v1/sessions/{session_id}/handoff-context", headers=tenant.headers)).json()
    replay = (await client.get(f"/v1/sessions/{session_id}/replay-context", headers=tenant.headers)).json()
    replay.pop("duration")  # minutes since the start: may tick between two reads
    return handoff, replay


async def test_appends_keep_the_newest_and_the_notable_entries(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    session_id = await _session_with_log(client, tenant, 45)

    doc = await database["sessions"].find_one({"session_id": session_id})
    assert doc is not None
    assert doc["context_lists"] is True
    assert doc["recent_entries"] == doc["work_log"][-views.RECENT_ACTIONS :]
    assert doc["notable_entries"] == [e for e in doc["work_log"] if e.get("type") in views.NOTABLE_TYPES]
    assert doc["notable_entries"]


async def test_contexts_from_the_kept_lists_equal_those_from_the_whole_log(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    session_id = await _session_with_log(client, tenant, 45)
    kept = await _contexts(client, tenant, session_id)

    # The same session as one stored before the lists existed: answered from work_log.
    await database["sessions"].update_one(
        {"session_id": session_id}, {"$unset": {"context_lists": "", "recent_entries": "", "notable_entries": ""}}
    )
    assert await _contexts(client, tenant, session_id) == kept
    handoff, replay = kept
    assert len(handoff["recent_actions"]) == views.RECENT_ACTIONS
    assert handoff["recent_actions"][0]["id"] == "s4"
    assert [e["id"] for e in replay["checkpoints"]] == [f"b{n}" for n in range(40) if TYPES[n % 7] == "checkpoint"] + [
        "s1"
    ]
    assert replay["progress_summary"]["last_action"] == "single 4"


async def test_a_session_without_the_mark_stays_answered_from_its_log_after_new_appends(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    session_id = await _session_with_log(client, tenant, 30)
    await database["sessions"].update_one(
        {"session_id": session_id}, {"$unset": {"context_lists": "", "recent_entries": "", "notable_entries": ""}}
    )
    body = {"id": "late", "message": "after the upgrade", "type": "error"}
    assert (
        await client.post(f"/v1/sessions/{session_id}/work-log", json=body, headers=tenant.headers)
    ).status_code == 201

    handoff, replay = await _contexts(client, tenant, session_id)
    log = (await client.get(f"/v1/sessions/{session_id}/work-log?order=desc&limit=20", headers=tenant.headers)).json()
    assert handoff["recent_actions"] == log["items"]
    errors = (await client.get(f"/v1/sessions/{session_id}/work-log?type=error", headers=tenant.headers)).json()
    assert replay["errors"] == errors["items"]
    assert len(replay["errors"]) > 1  # the ones from before the mark was removed too


async def test_a_replay_starts_with_complete_context_lists(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    session_id = await _session_with_log(client, tenant, 12)
    replayed = await client.post(f"/v1/sessions/{session_id}/replay", headers=tenant.headers)
    assert replayed.status_code == 201

    doc = await database["sessions"].find_one({"session_id": replayed.json()["session_id"]})
    assert doc is not None
    assert doc["context_lists"] is True
    assert doc["recent_entries"] == doc["work_log"]
    assert doc["notable_entries"] == []
    handoff = (
        await client.get(f"/v1/sessions/{replayed.json()['session_id']}/handoff-context", headers=tenant.headers)
    ).json()
    assert [entry["message"] for entry in handoff["recent_actions"]] == [f"Replayed from session {session_id}"]


def test_context_lists_of_a_whole_log() -> None:
    log = [{"id": str(n), "message": "m", "type": TYPES[n % len(TYPES)]} for n in range(50)]

    lists = views.context_lists(log)

    assert lists["context_lists"] is True
    assert lists["recent_entries"] == log[-20:]
    assert [e["type"] for e in lists["notable_entries"]] == [
        t for t in (TYPES[n % len(TYPES)] for n in range(50)) if t in {"checkpoint", "decision", "error"}
    ]
    assert views.context_lists([]) == {"recent_entries": [], "notable_entries": [], "context_lists": True}
