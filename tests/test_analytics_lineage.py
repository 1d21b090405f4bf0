"""Lineage along ``replayed_from`` and waiting handoffs, with sessions created and replayed through the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import Tenant


async def _post(client: httpx.AsyncClient, tenant: Tenant, path: str, body: Any = None) -> dict[str, Any]:
    response = await client.post(f"/v1/sessions{path}", json=body, headers=tenant.headers)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def _lineage(client: httpx.AsyncClient, tenant: Tenant, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/analytics/lineage/{session_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _ids(nodes: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(node["session_id"], node.get("depth")) for node in nodes]


@pytest.fixture
async def chain(client: httpx.AsyncClient, tenant: Tenant) -> list[str]:
    """An original session and three replays, each of the previous one: [original, r1, r2, r3]."""
    original = await _post(client, tenant, "", {"agent_type": "planner"})
    ids = [original["session_id"]]
    for agent in ("coder", "reviewer", "coder"):
        replay = await _post(client, tenant, f"/{ids[-1]}/replay", {"agent_type": agent})
        ids.append(replay["session_id"])
    return ids


async def test_lineage_of_a_chain_of_three_replays(client: httpx.AsyncClient, tenant: Tenant, chain: list[str]) -> None:
    original, r1, r2, r3 = chain
    last = await _lineage(client, tenant, r3)
    assert last["session_id"] == r3
    assert _ids(last["ancestors"]) == [(original, 3), (r1, 2), (r2, 1)]
    assert last["descendants"] == []
    assert [node["agent_type"] for node in last["ancestors"]] == ["planner", "coder", "reviewer"]
    assert [node["replayed_from"] for node in last["ancestors"]] == [None, original, r1]
    assert all(node["deleted"] is False and node["status"] == "active" for node in last["ancestors"])

    first = await _lineage(client, tenant, original)
    assert first["ancestors"] == []
    assert _ids(first["descendants"]) == [(r1, 1), (r2, 2), (r3, 3)]

    middle = await _lineage(client, tenant, r1)
    assert _ids(middle["ancestors"]) == [(original, 1)]
    assert _ids(middle["descendants"]) == [(r2, 1), (r3, 2)]


async def test_lineage_descendants_branch_by_generation(
    client: httpx.AsyncClient, tenant: Tenant, chain: list[str]
) -> None:
    original, r1, r2, r3 = chain
    sibling = (await _post(client, tenant, f"/{original}/replay"))["session_id"]
    tree = await _lineage(client, tenant, original)
    assert _ids(tree["descendants"]) == [(r1, 1), (sibling, 1), (r2, 2), (r3, 3)]
    assert tree["descendants"][1]["agent_type"] == "planner"  # a replay keeps the original's agent type


async def test_lineage_lists_a_deleted_ancestor_as_deleted(
    client: httpx.AsyncClient, tenant: Tenant, chain: list[str]
) -> None:
    original, r1, r2, r3 = chain
    assert (await client.delete(f"/v1/sessions/{r1}", headers=tenant.headers)).status_code == 204
    lineage = await _lineage(client, tenant, r3)
    assert lineage["ancestors"][0] == {"session_id": r1, "deleted": True}
    assert _ids(lineage["ancestors"][1:]) == [(r2, 1)]
    # nothing older than a deleted ancestor can be known from its child
    assert original not in {node["session_id"] for node in lineage["ancestors"]}
    assert (await _lineage(client, tenant, r2))["ancestors"] == [{"session_id": r1, "deleted": True}]
    assert _ids((await _lineage(client, tenant, original))["descendants"]) == []


async def test_lineage_of_another_workspaces_session_is_404(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, chain: list[str]
) -> None:
    for session_id in (chain[1], "sess_does-not-exist"):
        response = await client.get(f"/v1/analytics/lineage/{session_id}", headers=other_tenant.headers)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
    # and the other workspace's own sessions never join this chain
    theirs = await _post(client, other_tenant, "", {"agent_type": "x"})
    assert (await _lineage(client, other_tenant, theirs["session_id"])) == {
        "session_id": theirs["session_id"],
        "ancestors": [],
        "descendants": [],
    }


async def test_handoffs_wait_until_a_replay_continues_them(client: httpx.AsyncClient, tenant: Tenant) -> None:
    first = (await _post(client, tenant, "", {"agent_type": "coder"}))["session_id"]
    second = (await _post(client, tenant, "", {"agent_type": "tester"}))["session_id"]
    for session_id in (first, second):
        notes = {"summary": f"notes of {session_id}", "next_steps": ["write tests"], "blockers": ["none"]}
        handed = await _post(client, tenant, f"/{session_id}/handoff", notes)
        assert handed["status"] == "paused"

    async def waiting() -> list[str]:
        response = await client.get("/v1/analytics/handoffs", headers=tenant.headers)
        assert response.status_code == 200
        return [item["session_id"] for item in response.json()["items"]]

    assert sorted(await waiting()) == sorted([first, second])
    replay = await _post(client, tenant, f"/{first}/replay")
    assert await waiting() == [second]
    # the replay carries the notes but is active, so it is not itself a waiting handoff
    assert replay["status"] == "active"
    item = (await client.get("/v1/analytics/handoffs", headers=tenant.headers)).json()["items"][0]
    assert item["summary"] == f"notes of {second}"
    assert item["next_steps"] == ["write tests"]
    assert item["blockers"] == ["none"]
    assert item["agent_type"] == "tester"
    assert item["paused_since"].endswith("+00:00")
