"""Claim events through the real SSE route (uvicorn on a loopback port, the replica-set mongod): what a claim, a
release, an expired lease claimed again and a completion stream for the handoff, that they resume exactly with
``Last-Event-ID`` like every event (they come from the change stream, not from the process that made them), and
that a claim neither streams a ``session.updated`` of the handoff nor moves its ``updated_at``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from handoff import clock
from tests.factories import Tenant
from tests.test_events_api import Message, call, events_settings, http, stream

pytestmark = pytest.mark.timeout(60)
__all__ = ["events_settings", "http"]  # the fixtures this module shares with test_events_api


class Clock:
    def __init__(self) -> None:
        self.at = clock.now()

    def now(self) -> datetime:
        return self.at


async def handoff(http: httpx.AsyncClient, tenant: Tenant, **body: Any) -> str:
    sid: str = (await call(http, tenant, "POST", "", body))["session_id"]
    await call(http, tenant, "POST", f"/{sid}/handoff", {"summary": "over to you"})
    return sid


async def claim(http: httpx.AsyncClient, tenant: Tenant, **body: Any) -> Any:
    response = await http.post("/v1/handoffs/claim", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def claims(http: httpx.AsyncClient, tenant: Tenant, path: str, body: Any = None) -> Any:
    method = "GET" if body is None else "POST"
    response = await http.request(method, f"/v1/claims/{path}", headers=tenant.headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def handoff_events(got: list[Message], sid: str) -> list[str]:
    return [m.event for m in got if m.data["session_id"] == sid and m.event is not None]


async def test_claim_and_release_stream_claimed_released_and_waiting(http: httpx.AsyncClient, tenant: Tenant) -> None:
    sid = await handoff(http, tenant, agent_type="coder")
    before = await call(http, tenant, "GET", f"/{sid}")
    async with stream(http, tenant, types="handoff.waiting,handoff.claimed,handoff.released") as reader:
        made = await claim(http, tenant, lease_seconds=60)
        claimed = (await reader.events(1))[0]
        released = await claims(http, tenant, f"{made['claim_id']}/release", {"reason": "oom"})
        gone, waits = await reader.events(2)
    assert (claimed.event, claimed.data["session_id"]) == ("handoff.claimed", sid)
    read_then = {**released, "state": "active", "ended_at": None}
    assert claimed.data["claim"] == read_then  # the claim as GET /v1/claims/{id} answered while it held
    assert (gone.event, gone.data["session_id"]) == ("handoff.released", sid)
    assert gone.data["claim"] == released  # as GET answers once released
    assert gone.data["reason"] == f"claim {made['claim_id']} released: oom"
    assert (waits.event, waits.data["session_id"], waits.data["released_claim_id"]) == (
        "handoff.waiting",
        sid,
        made["claim_id"],
    )
    assert waits.data["handoff_notes"] == before["handoff_notes"]  # what a handoff.waiting carries, as GET has it
    assert waits.data["handoff_notes"]["summary"] == "over to you"
    after = await call(http, tenant, "GET", f"/{sid}")
    assert (after["updated_at"], after["last_active_at"]) == (before["updated_at"], before["last_active_at"])


async def test_a_claim_streams_no_session_updated_of_the_handoff(http: httpx.AsyncClient, tenant: Tenant) -> None:
    sid = await handoff(http, tenant)
    async with stream(http, tenant) as reader:
        made = await claim(http, tenant)
        replay = made["session"]["session_id"]
        await call(http, tenant, "POST", f"/{replay}/complete", {"summary": "done"})
        assert (await claims(http, tenant, made["claim_id"]))["state"] == "completed"  # marks the handoff
        await call(http, tenant, "PATCH", f"/{sid}/context", {"note": "x"})  # a later change: the marker to stop at
        got: list[Message] = []
        while not got or got[-1].data["session_id"] != sid or got[-1].event != "session.updated":
            got += await reader.events(1)
    assert handoff_events(got, sid) == ["handoff.claimed", "session.updated"]
    assert list(got[-1].data["changes"]) == ["context_summary"]
    assert [m.event for m in got if m.data["session_id"] == replay] == ["session.created", "session.updated"]


async def test_an_expired_lease_claimed_again_streams_released_then_claimed(
    http: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = Clock()
    monkeypatch.setattr(clock, "now", pinned.now)
    sid = await handoff(http, tenant)
    async with stream(http, tenant, types="handoff.waiting,handoff.claimed,handoff.released") as reader:
        old = await claim(http, tenant, lease_seconds=10)
        pinned.at += timedelta(seconds=11)
        new = await claim(http, tenant)
        got = await reader.events(3)
    assert [(m.event, m.data["claim"]["claim_id"]) for m in got] == [
        ("handoff.claimed", old["claim_id"]),
        ("handoff.released", old["claim_id"]),
        ("handoff.claimed", new["claim_id"]),
    ]
    assert got[1].data["claim"]["state"] == "expired"
    assert "lease expired" in got[1].data["reason"]
    assert all(m.data["session_id"] == sid for m in got)


async def test_claim_events_resume_exactly_with_last_event_id(http: httpx.AsyncClient, tenant: Tenant) -> None:
    types = "handoff.waiting,handoff.claimed,handoff.released"
    await handoff(http, tenant)
    async with stream(http, tenant, types=types) as witness:
        async with stream(http, tenant, types=types) as reader:
            made = await claim(http, tenant)
            seen = await reader.events(1)
        await claims(http, tenant, f"{made['claim_id']}/release", {})
        again = await claim(http, tenant)
        everything = await witness.events(4)
        async with stream(http, tenant, last_event_id=seen[0].id, types=types) as resumed:
            missed = await resumed.events(3)
    assert [m.id for m in everything[:1]] == [m.id for m in seen]
    assert [(m.id, m.event, m.data) for m in missed] == [(m.id, m.event, m.data) for m in everything[1:]]
    assert [m.event for m in missed] == ["handoff.released", "handoff.waiting", "handoff.claimed"]
    assert missed[-1].data["claim"]["claim_id"] == again["claim_id"]
