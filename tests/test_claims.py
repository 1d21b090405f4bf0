"""Handoff claims (api.md, "Handoff claims"), through the app on the real mongod: exactly-once claims under a
race, the claim and the replay in one transaction, leases that run out at read time, release, completion,
listing, analytics and tenancy."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from handoff import clock
from handoff.analytics import pipelines
from handoff.analytics import service as analytics
from handoff.analytics.expressions import ALL_TIME
from handoff.sessions import service as sessions_service
from tests.api import Api, ok, problem
from tests.factories import Tenant


class Clock:
    """A pinned clock: every time the service stamps is ``at``."""

    def __init__(self) -> None:
        self.at = clock.now()

    def now(self) -> datetime:
        return self.at


async def waiting_handoff(api: Api, **body: Any) -> str:
    """A session handed off (paused with notes) through the API."""
    sid: str = (await api.create(**body))["session_id"]
    await api.post(sid, "handoff", {"summary": f"over to you, {sid}"})
    return sid


async def claim(client: httpx.AsyncClient, tenant: Tenant, body: Any = None) -> httpx.Response:
    return await client.post("/v1/handoffs/claim", json=body or {}, headers=tenant.headers)


async def claims_call(client: httpx.AsyncClient, tenant: Tenant, method: str, path: str = "", **kw: Any) -> Any:
    return await client.request(method, f"/v1/claims{path}", headers=tenant.headers, **kw)


async def test_claim_takes_the_oldest_waiting_handoff_and_opens_its_replay(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    first = await waiting_handoff(api, agent_type="coder")
    await waiting_handoff(api, agent_type="coder")
    body = ok(await claim(client, tenant, {"lease_seconds": 60}), 201)
    assert set(body) == {"claim_id", "handoff_session_id", "session", "lease_expires_at"}
    assert body["handoff_session_id"] == first
    assert body["session"]["status"] == "active"
    replay = await api.get(body["session"]["session_id"])
    assert replay["status"] == "active"
    read = ok(await claims_call(client, tenant, "GET", f"/{body['claim_id']}"))
    assert read["state"] == "active"
    assert read["session_id"] == body["session"]["session_id"]
    assert read["lease_expires_at"] == body["lease_expires_at"]


async def test_claim_filters_by_agent_type_and_answers_204_when_nothing_waits(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    assert (await claim(client, tenant)).status_code == 204
    coder = await waiting_handoff(api, agent_type="coder")
    assert (await claim(client, tenant, {"agent_type": "reviewer"})).status_code == 204
    assert ok(await claim(client, tenant, {"agent_type": "coder"}), 201)["handoff_session_id"] == coder
    assert (await claim(client, tenant)).status_code == 204  # claimed: no longer waiting
    problem(await claim(client, tenant, {"lease_seconds": 5}), 422)


async def test_50_concurrent_claimers_over_20_handoffs_make_exactly_20_distinct_claims(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    handoffs = {await waiting_handoff(api) for _ in range(20)}
    answers = await asyncio.gather(*(claim(client, tenant) for _ in range(50)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 20 + [204] * 30
    claimed = [answer.json()["handoff_session_id"] for answer in answers if answer.status_code == 201]
    assert set(claimed) == handoffs
    listed = ok(await claims_call(client, tenant, "GET", "", params={"state": "active", "limit": 200}))["items"]
    assert len(listed) == 20


async def test_a_failure_after_the_claim_insert_leaves_the_handoff_waiting(
    client: httpx.AsyncClient, tenant: Tenant, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await waiting_handoff(api)

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected: the process died between the claim and the replay")

    with monkeypatch.context() as patch:
        patch.setattr(sessions_service, "replay_session", crash)
        problem(await claim(client, tenant), 500)
    assert ok(await claims_call(client, tenant, "GET"))["items"] == []
    assert ok(await api.call("GET", "", params={"status": "active"}))["items"] == []  # no replay left behind
    assert ok(await claim(client, tenant), 201)["handoff_session_id"] == sid


async def test_an_expired_lease_is_claimable_again_and_fails_the_old_replay(
    client: httpx.AsyncClient, tenant: Tenant, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = Clock()
    monkeypatch.setattr(clock, "now", pinned.now)
    sid = await waiting_handoff(api)
    old = ok(await claim(client, tenant, {"lease_seconds": 60}), 201)
    assert (await claim(client, tenant)).status_code == 204
    pinned.at += timedelta(seconds=50)
    await api.post(old["session"]["session_id"], "touch")  # a write to the replay renews the lease
    pinned.at += timedelta(seconds=50)
    assert (await claim(client, tenant)).status_code == 204
    pinned.at += timedelta(seconds=11)
    assert ok(await claims_call(client, tenant, "GET", f"/{old['claim_id']}"))["state"] == "expired"
    problem(await claims_call(client, tenant, "POST", f"/{old['claim_id']}/heartbeat"), 409)
    new = ok(await claim(client, tenant), 201)
    assert new["handoff_session_id"] == sid
    assert new["claim_id"] != old["claim_id"]
    failed = await api.get(old["session"]["session_id"])
    assert failed["status"] == "failed"
    assert "lease expired" in failed["final_summary"]
    assert ok(await claims_call(client, tenant, "GET", f"/{old['claim_id']}"))["state"] == "expired"
    expired = ok(await claims_call(client, tenant, "GET", "", params={"state": "expired"}))["items"]
    assert [item["claim_id"] for item in expired] == [old["claim_id"]]


async def test_heartbeat_renews_the_lease(
    client: httpx.AsyncClient, tenant: Tenant, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = Clock()
    monkeypatch.setattr(clock, "now", pinned.now)
    await waiting_handoff(api)
    made = ok(await claim(client, tenant, {"lease_seconds": 60}), 201)
    pinned.at += timedelta(seconds=45)
    beat = ok(await claims_call(client, tenant, "POST", f"/{made['claim_id']}/heartbeat"))
    assert beat["claim_id"] == made["claim_id"]
    # Compared as times: a time on a whole second is written without its zero microseconds.
    assert datetime.fromisoformat(beat["lease_expires_at"]) == pinned.at + timedelta(seconds=60)
    pinned.at += timedelta(seconds=45)  # past the first lease, within the renewed one
    assert ok(await claims_call(client, tenant, "GET", f"/{made['claim_id']}"))["state"] == "active"
    assert (await claim(client, tenant)).status_code == 204


async def test_release_fails_the_replay_and_the_handoff_waits_again(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    sid = await waiting_handoff(api)
    made = ok(await claim(client, tenant), 201)
    assert ok(await api.client.get("/v1/analytics/handoffs", headers=tenant.headers))["items"] == []
    released = ok(await claims_call(client, tenant, "POST", f"/{made['claim_id']}/release", json={"reason": "oom"}))
    assert released["state"] == "released"
    assert released["ended_at"] is not None
    replay = await api.get(made["session"]["session_id"])
    assert (replay["status"], replay["final_summary"]) == ("failed", f"claim {made['claim_id']} released: oom")
    problem(await claims_call(client, tenant, "POST", f"/{made['claim_id']}/release", json={}), 409)
    waiting = ok(await api.client.get("/v1/analytics/handoffs", headers=tenant.headers))["items"]
    assert [row["session_id"] for row in waiting] == [sid]
    assert ok(await claim(client, tenant), 201)["handoff_session_id"] == sid


async def test_completing_the_replay_completes_the_claim(client: httpx.AsyncClient, tenant: Tenant, api: Api) -> None:
    await waiting_handoff(api)
    made = ok(await claim(client, tenant), 201)
    await api.post(made["session"]["session_id"], "complete", {"summary": "done"})
    read = ok(await claims_call(client, tenant, "GET", f"/{made['claim_id']}"))
    assert read["state"] == "completed"
    assert read["ended_at"] is not None
    assert (await claim(client, tenant)).status_code == 204  # a completed handoff does not wait again
    listed = ok(await claims_call(client, tenant, "GET", "", params={"state": "completed"}))["items"]
    assert [item["claim_id"] for item in listed] == [made["claim_id"]]


async def test_another_workspaces_handoffs_and_claims_are_invisible(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, api: Api
) -> None:
    await waiting_handoff(api)
    assert (await claim(client, other_tenant)).status_code == 204
    made = ok(await claim(client, tenant), 201)
    problem(await claims_call(client, other_tenant, "GET", f"/{made['claim_id']}"), 404)
    problem(await claims_call(client, other_tenant, "POST", f"/{made['claim_id']}/heartbeat"), 404)
    problem(await claims_call(client, other_tenant, "POST", f"/{made['claim_id']}/release", json={}), 404)
    assert ok(await claims_call(client, other_tenant, "GET"))["items"] == []


async def test_claims_list_pages_newest_first(client: httpx.AsyncClient, tenant: Tenant, api: Api) -> None:
    made = []
    for _ in range(3):
        await waiting_handoff(api)
        made.append(ok(await claim(client, tenant), 201)["claim_id"])
    first = ok(await claims_call(client, tenant, "GET", "", params={"limit": 2}))
    second = ok(await claims_call(client, tenant, "GET", "", params={"limit": 2, "cursor": first["next_cursor"]}))
    assert [item["claim_id"] for item in first["items"] + second["items"]] == made[::-1]
    assert second["next_cursor"] is None
    problem(await claims_call(client, tenant, "GET", "", params={"cursor": "nonsense"}), 422)


async def test_claims_listed_by_state_fill_the_page_however_many_newer_claims_are_in_other_states(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    active = []
    for _ in range(2):
        await waiting_handoff(api)
        active.append(ok(await claim(client, tenant, {"lease_seconds": 600}), 201)["claim_id"])
    released = []
    for _ in range(3):  # newer than the active ones: a page filtered after its limit would hold none of those
        await waiting_handoff(api)
        made = ok(await claim(client, tenant), 201)["claim_id"]
        ok(await claims_call(client, tenant, "POST", f"/{made}/release", json={}))
        released.append(made)
    ended = ok(await claim(client, tenant), 201)  # its replay completes: not ended in store, but derived so
    await api.post(ended["session"]["session_id"], "complete", {"summary": "done"})

    def listed(body: Any) -> list[str]:
        return [item["claim_id"] for item in body["items"]]

    page = ok(await claims_call(client, tenant, "GET", "", params={"state": "active", "limit": 2}))
    assert (listed(page), page["next_cursor"]) == (active[::-1], None)
    first = ok(await claims_call(client, tenant, "GET", "", params={"state": "active", "limit": 1}))
    assert listed(first) == [active[1]]
    params = {"state": "active", "limit": 1, "cursor": first["next_cursor"]}
    second = ok(await claims_call(client, tenant, "GET", "", params=params))
    assert (listed(second), second["next_cursor"]) == ([active[0]], None)
    page = ok(await claims_call(client, tenant, "GET", "", params={"state": "released", "limit": 5}))
    assert (listed(page), page["next_cursor"]) == (released[::-1], None)
    page = ok(await claims_call(client, tenant, "GET", "", params={"state": "completed", "limit": 1}))
    assert (listed(page), page["next_cursor"]) == ([ended["claim_id"]], None)


async def test_a_repeated_idempotency_key_returns_the_same_claim(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    await waiting_handoff(api)
    await waiting_handoff(api)
    headers = {**tenant.headers, "Idempotency-Key": "claim-1"}
    first = ok(await client.post("/v1/handoffs/claim", json={}, headers=headers), 201)
    again = ok(await client.post("/v1/handoffs/claim", json={}, headers=headers), 200)
    assert again["claim_id"] == first["claim_id"]
    assert again["session"]["session_id"] == first["session"]["session_id"]
    assert len(ok(await claims_call(client, tenant, "GET"))["items"]) == 1


async def test_analytics_lists_a_handoff_whose_lease_ran_out_though_nobody_claimed_it_again(
    client: httpx.AsyncClient, tenant: Tenant, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = Clock()
    monkeypatch.setattr(clock, "now", pinned.now)
    sid = await waiting_handoff(api)
    await claim(client, tenant, {"lease_seconds": 60})
    handoffs = "/v1/analytics/handoffs"
    assert ok(await client.get(handoffs, headers=tenant.headers))["items"] == []
    pinned.at += timedelta(seconds=61)
    assert [row["session_id"] for row in ok(await client.get(handoffs, headers=tenant.headers))["items"]] == [sid]


async def test_a_replay_its_agent_failed_lets_the_handoff_wait_again(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    sid = await waiting_handoff(api)
    made = ok(await claim(client, tenant), 201)
    await api.post(made["session"]["session_id"], "fail", {"reason": "gave up"})
    rows = ok(await client.get("/v1/analytics/handoffs", headers=tenant.headers))["items"]
    assert [row["session_id"] for row in rows] == [sid]
    again = ok(await claim(client, tenant), 201)
    assert again["handoff_session_id"] == sid
    old = ok(await claims_call(client, tenant, "GET", f"/{made['claim_id']}"))
    assert old["state"] == "released"
    assert (await api.get(made["session"]["session_id"]))["final_summary"] == "gave up"  # the agent's own words


async def test_a_released_replay_is_ended_as_post_fail_ends_it(
    client: httpx.AsyncClient, tenant: Tenant, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = Clock()
    monkeypatch.setattr(clock, "now", pinned.now)
    await waiting_handoff(api)
    made = ok(await claim(client, tenant, {"lease_seconds": 3600}), 201)
    pinned.at += timedelta(minutes=7)
    ok(await claims_call(client, tenant, "POST", f"/{made['claim_id']}/release", json={}))
    replay = await api.get(made["session"]["session_id"])
    assert (replay["status"], replay["duration_minutes"], replay["duration"]) == ("failed", 7, "7m")
    assert replay["ended_at"] == pinned.at.isoformat()


async def test_the_waiting_search_examines_about_one_page_of_documents(
    client: httpx.AsyncClient, tenant: Tenant, api: Api
) -> None:
    made = [await waiting_handoff(api) for _ in range(40)]
    for sid in made[:3]:  # continued by a plain replay: never waiting again, and skipped past by the pages
        await api.post(sid, "replay", status=201)
    rows = ok(await client.get("/v1/analytics/handoffs", params={"limit": 20}, headers=tenant.headers))["items"]
    assert [row["session_id"] for row in rows] == made[3:23]
    verdict = await analytics.explain(pipelines.handoffs(tenant.workspace.workspace_id, ALL_TIME, 20))
    assert verdict.indexes == ["waiting_handoffs"]
    assert verdict.docs_examined == 20 + 3  # the page's candidates, and the three replays their lookups find
    assert ok(await claim(client, tenant), 201)["handoff_session_id"] == made[3]
