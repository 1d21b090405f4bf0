"""The periodic claim sweep, against the app on the real mongod: lapsed claims end as ``expired`` (their replay
fails saying why, the handoff waits again), failed replays release their claim, completions are settled, in
bounded batches; two sweepers end each claim once and the metrics count it once; the background loop runs by
itself when configured."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from handoff import clock
from handoff.claims import sweep
from handoff.config import Settings
from tests.api import Api, ok
from tests.test_ops_metrics import scrape, value


class Clock:
    def __init__(self) -> None:
        self.at = clock.now()

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> Clock:
    at = Clock()
    monkeypatch.setattr(clock, "now", at.now)
    return at


async def claimed(api: Api, count: int = 1, lease_seconds: int = 60) -> list[dict[str, Any]]:
    """``count`` handoffs, each claimed through the API."""
    made = []
    for _ in range(count):
        sid = (await api.create())["session_id"]
        await api.post(sid, "handoff", {"summary": "over to you"})
        response = await api.client.post(
            "/v1/handoffs/claim", json={"lease_seconds": lease_seconds}, headers=api.tenant.headers
        )
        made.append(ok(response, 201))
    return made


async def claim_state(api: Api, claim_id: str) -> str:
    state: str = ok(await api.client.get(f"/v1/claims/{claim_id}", headers=api.tenant.headers))["state"]
    return state


async def waiting(api: Api) -> list[str]:
    rows = ok(await api.client.get("/v1/analytics/handoffs", headers=api.tenant.headers))["items"]
    return [row["session_id"] for row in rows]


async def test_the_sweep_ends_lapsed_claims_as_expired_in_batches(api: Api, pinned: Clock) -> None:
    made = await claimed(api, 5)
    kept = (await claimed(api, 1, lease_seconds=3600))[0]
    assert (await sweep.sweep()).expired == []  # nothing has lapsed yet
    pinned.at += timedelta(seconds=61)
    result = await sweep.sweep(batch_size=2, pause=0)
    assert sorted(result.expired) == sorted(claim["claim_id"] for claim in made)
    for claim in made:
        assert await claim_state(api, claim["claim_id"]) == "expired"
        replay = await api.get(claim["session"]["session_id"])
        assert replay["status"] == "failed"
        assert replay["final_summary"].startswith(f"claim {claim['claim_id']} expired: no heartbeat")
        assert replay["duration_minutes"] == 1
    assert await claim_state(api, kept["claim_id"]) == "active"
    assert sorted(await waiting(api)) == sorted(claim["handoff_session_id"] for claim in made)
    assert (await sweep.sweep()).expired == []  # ended once


async def test_two_sweepers_end_each_claim_once_and_count_it_once(
    client: httpx.AsyncClient, api: Api, pinned: Clock
) -> None:
    made = await claimed(api, 6)
    pinned.at += timedelta(seconds=61)
    before = value(await scrape(client), "handoff_claims_total", outcome="expired")
    first, second = await asyncio.gather(sweep.sweep(batch_size=2, pause=0), sweep.sweep(batch_size=2, pause=0))
    ended = first.expired + second.expired
    assert sorted(ended) == sorted(claim["claim_id"] for claim in made)
    assert value(await scrape(client), "handoff_claims_total", outcome="expired") - before == 6
    for claim in made:  # reads after the sweep count nothing more
        assert await claim_state(api, claim["claim_id"]) == "expired"
    assert value(await scrape(client), "handoff_claims_total", outcome="expired") - before == 6


async def test_the_sweep_releases_a_claim_whose_replay_failed_and_settles_a_completed_one(
    client: httpx.AsyncClient, api: Api
) -> None:
    failed, completed = await claimed(api, 2)
    await api.post(failed["session"]["session_id"], "fail", {"reason": "gave up"})
    await api.post(completed["session"]["session_id"], "complete", {"summary": "done"})
    before = value(await scrape(client), "handoff_claims_total", outcome="completed")
    result = await sweep.sweep()
    assert (result.released, result.completed) == ([failed["claim_id"]], [completed["claim_id"]])
    assert (await api.get(failed["session"]["session_id"]))["final_summary"] == "gave up"  # the agent's, kept
    assert await waiting(api) == [failed["handoff_session_id"]]
    assert await claim_state(api, completed["claim_id"]) == "completed"  # already settled: not counted again
    assert value(await scrape(client), "handoff_claims_total", outcome="completed") - before == 1
    assert await sweep.sweep() == sweep.SweepResult()


async def test_the_background_sweep_runs_by_itself(api: Api, settings: Settings, pinned: Clock) -> None:
    claim = (await claimed(api))[0]
    pinned.at += timedelta(seconds=61)
    async with sweep.running(settings.model_copy(update={"claim_sweep_interval_seconds": 0.05})):
        for _ in range(200):  # a read derives "expired" by itself; only the sweep fails the replay
            replay = await api.get(claim["session"]["session_id"])
            if replay["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the background sweep never ended the lapsed claim")
    assert "expired" in replay["final_summary"]
