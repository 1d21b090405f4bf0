"""The artifacts rollup: ``GET /v1/analytics/artifacts`` answers from the day documents plus the dirty sessions'
pending change, and must equal the reference pipeline (every session document and sealed page of the window) at
every moment: through appends, removals, session deletes, imports, retention and passes running concurrently.

Pages of four entries, so sessions cross seal boundaries and their artifacts live on sealed pages too.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff import bulk, clock
from handoff.analytics import service
from handoff.analytics.expressions import Window
from handoff.analytics.rollup import worker
from handoff.analytics.rollup.models import ArtifactDay
from handoff.analytics.rollup.pipelines import Split, day_of, split
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.retention.service import prune
from handoff.sessions.models import LogPage, Session
from tests.api import Api, ok
from tests.factories import Tenant, small_pages_app

PATHS = [f"src/m{n}.py" for n in range(7)]
ACTIONS = ["created", "modified", "deleted"]
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


# The tests run the passes themselves (interval 0: no background pass).
app = small_pages_app(artifacts_rollup_interval_seconds=0)


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> Clock:
    current = Clock(DAY0)
    monkeypatch.setattr(clock, "now", current.now)
    return current


def windows() -> list[Window]:
    """All time, whole days, and windows whose edges cut days (one day, two days, many), each way round."""
    # DAY0 is the first of a month: windows cross it, start or end on it, and hold whole months or not.
    points = ((-2, 3), (-1, 0), (0, 0), (1, 0), (1, 5), (2, 13), (3, 0), (4, 20))
    at = [DAY0 + timedelta(days=d, hours=h) for d, h in points]
    found = [Window()]
    found += [Window(since=at[i]) for i in range(len(at))] + [Window(until=at[i]) for i in range(len(at))]
    found += [Window(since=a, until=b) for i, a in enumerate(at) for b in at[i + 1 :]]
    found.append(Window(since=DAY0 + timedelta(days=2, hours=1), until=DAY0 + timedelta(days=2, hours=23)))
    return found


async def route(client: httpx.AsyncClient, tenant: Tenant, window: Window, limit: int) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    if window.since is not None:
        params["since"] = window.since.isoformat()
    if window.until is not None:
        params["until"] = window.until.isoformat()
    body = ok(await client.get("/v1/analytics/artifacts", params=params, headers=tenant.headers))
    items: list[dict[str, Any]] = body["items"]
    return items


async def assert_route_is_the_reference(client: httpx.AsyncClient, tenant: Tenant) -> None:
    workspace_id = tenant.workspace.workspace_id
    for window in windows():
        for limit in (3, 100):
            expected = (await service.artifacts_reference(workspace_id, limit=limit, window=window)).model_dump()
            assert await route(client, tenant, window, limit) == expected["items"], (window, limit)


async def day_totals(workspace_id: str, period: str = "day") -> dict[str, dict[str, int]]:
    """The day (or month) documents summed per path (zero rows left out)."""
    totals: dict[str, dict[str, int]] = {}
    async for day in ArtifactDay.find({"workspace_id": workspace_id, "period": period}):
        row = totals.setdefault(day.path, dict.fromkeys(("touches", *ACTIONS, "sessions"), 0))
        for name in row:
            row[name] += getattr(day, name)
    return {path: row for path, row in totals.items() if any(row.values())}


def test_split_cuts_a_window_at_the_midnights_inside_it() -> None:
    d = DAY0
    assert split(Window()) == Split(days=Window(), edges=[], months=Window())
    cut = split(Window(since=d + timedelta(hours=5), until=d + timedelta(days=3, hours=2)))
    assert cut.days == Window(since=d + timedelta(days=1), until=d + timedelta(days=3))
    assert cut.months is None  # no whole month in it
    assert cut.day_ranges == (cut.days,)
    assert cut.edges == [
        Window(since=d + timedelta(hours=5), until=d + timedelta(days=1)),
        Window(since=d + timedelta(days=3), until=d + timedelta(days=3, hours=2)),
    ]
    inside = Window(since=d + timedelta(hours=1), until=d + timedelta(days=1, hours=1))
    assert split(inside) == Split(days=None, edges=[inside])
    whole = Window(since=d, until=d + timedelta(days=2))
    assert split(whole) == Split(days=whole, edges=[], months=None, day_ranges=(whole,))
    months = split(Window(since=datetime(2026, 1, 30, 6, tzinfo=UTC), until=datetime(2026, 4, 2, tzinfo=UTC)))
    assert months.months == Window(since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 4, 1, tzinfo=UTC))
    assert months.day_ranges == (
        Window(since=datetime(2026, 1, 31, tzinfo=UTC), until=datetime(2026, 2, 1, tzinfo=UTC)),
        Window(since=datetime(2026, 4, 1, tzinfo=UTC), until=datetime(2026, 4, 2, tzinfo=UTC)),
    )
    assert months.edges == [Window(since=datetime(2026, 1, 30, 6, tzinfo=UTC), until=datetime(2026, 1, 31, tzinfo=UTC))]
    december = split(Window(since=datetime(2025, 12, 1, tzinfo=UTC)))
    assert december == Split(days=december.days, edges=[], months=Window(since=datetime(2025, 12, 1, tzinfo=UTC)))
    assert day_of(datetime(2026, 3, 1, 23, 59, tzinfo=UTC)) == d


async def test_the_route_is_the_reference_through_appends_removals_deletes_and_concurrent_passes(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, pinned: Clock
) -> None:
    rng = random.Random(12)
    api, other = Api(client, tenant), Api(client, other_tenant)
    workspace_id = tenant.workspace.workspace_id
    await worker.mark_stored_before(workspace_id)
    sessions: list[str] = []
    for n in range(10):
        pinned.at = DAY0 + timedelta(days=n % 6 - 2, hours=rng.randrange(24), minutes=n)
        sessions.append((await api.create())["session_id"])
    pinned.at = DAY0 + timedelta(days=1, hours=3)
    noise = (await other.create())["session_id"]
    pinned.at = DAY0 + timedelta(days=7)
    ids: dict[str, list[str]] = {sid: [] for sid in sessions}
    counter = 0

    async def append(sid: str) -> None:
        nonlocal counter
        counter += 1
        body = {"id": f"a{counter}", "path": rng.choice(PATHS), "action": rng.choice(ACTIONS)}
        await api.post(sid, "artifacts", body, 201)
        ids[sid].append(body["id"])

    for step in range(90):
        live = [sid for sid in sessions if sid in ids]
        sid = rng.choice(live)
        roll = rng.random()
        if roll < 0.5:
            await asyncio.gather(*(append(rng.choice(live)) for _ in range(rng.randint(1, 6))))
        elif roll < 0.6 and ids[sid]:
            entry = ids[sid].pop(rng.randrange(len(ids[sid])))
            assert (await api.call("DELETE", f"/{sid}/artifacts/{entry}")).status_code == 204
        elif roll < 0.67 and ids[sid]:
            popped = ok(await api.call("POST", f"/{sid}/artifacts/pop"))
            ids[sid].remove(popped["id"])
        elif roll < 0.7:
            assert (await api.call("DELETE", f"/{sid}/artifacts")).status_code == 204
            ids[sid] = []
        elif roll < 0.73 and len(live) > 4:
            assert (await api.call("DELETE", f"/{sid}")).status_code == 204
            del ids[sid]
        elif roll < 0.85:  # a pass racing appends and a removal
            racing = [append(rng.choice(live)) for _ in range(4)]
            await asyncio.gather(worker.fold_batch(workspace_id, limit=rng.randint(1, 4)), *racing)
        else:
            await worker.fold_batch(workspace_id, limit=rng.randint(1, 10))
        if step % 10 == 0:  # another workspace's artifacts never count
            await other.post(noise, "artifacts", {"path": PATHS[0], "action": "created"}, 201)
        if step % 15 == 14:
            await assert_route_is_the_reference(client, tenant)
    assert await LogPage.find({"workspace_id": workspace_id, "kind": "artifacts"}).count() > 3  # pages counted
    await assert_route_is_the_reference(client, tenant)
    await worker.catch_up(workspace_id)
    assert await Session.find({"workspace_id": workspace_id, "rollup_dirty": True}).count() == 0
    await assert_route_is_the_reference(client, tenant)
    # Everything folded: the day documents alone are the whole answer.
    everything = (await service.artifacts_reference(workspace_id, limit=100)).model_dump()["items"]
    assert await day_totals(workspace_id) == {row.pop("path"): row for row in everything}
    assert await day_totals(workspace_id, "month") == await day_totals(workspace_id)


async def test_sessions_stored_before_the_rollup_count_from_the_first_pass_on(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, pinned: Clock
) -> None:
    workspace_id = tenant.workspace.workspace_id
    api = Api(client, tenant)
    sid = (await api.create())["session_id"]
    for n in range(9):  # past two pages of four
        await api.post(sid, "artifacts", {"id": f"old{n}", "path": PATHS[n % 3], "action": "modified"}, 201)
    # As the service stored it before the rollup existed: neither rollup field.
    await database["sessions"].update_one(
        {"workspace_id": workspace_id, "session_id": sid}, {"$unset": {"rollup_dirty": "", "rollup_snapshot": ""}}
    )
    assert not await worker.is_ready(workspace_id)
    await assert_route_is_the_reference(client, tenant)  # answered by the reference pipeline meanwhile
    await worker.mark_stored_before(workspace_id)
    assert await worker.is_ready(workspace_id)
    stored = await database["sessions"].find_one({"workspace_id": workspace_id, "session_id": sid})
    assert stored is not None
    assert stored["rollup_dirty"] is True
    await assert_route_is_the_reference(client, tenant)  # read live as a dirty session
    assert await worker.catch_up(workspace_id) == 1
    await assert_route_is_the_reference(client, tenant)
    assert (await day_totals(workspace_id))[PATHS[0]] == {
        "touches": 3,
        "created": 0,
        "modified": 3,
        "deleted": 0,
        "sessions": 1,
    }


async def test_imports_replacements_and_retention_keep_the_day_documents_exact(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings, tmp_path: Path, pinned: Clock
) -> None:
    workspace_id = tenant.workspace.workspace_id
    await worker.mark_stored_before(workspace_id)

    def line(session_id: str, day: int, paths: list[str], status: str = "completed") -> dict[str, Any]:
        started = DAY0 + timedelta(days=day, hours=7)
        return {
            "session_id": session_id,
            "status": status,
            "started_at": started.isoformat(),
            "ended_at": (started + timedelta(hours=1)).isoformat(),
            "work_log": [],
            "artifacts": [
                {"id": f"{session_id}-{n}", "path": path, "action": ACTIONS[n % 3], "timestamp": started.isoformat()}
                for n, path in enumerate(paths)
            ],
        }

    first = tmp_path / "first.jsonl"
    rows = [line(f"imp{n}", n % 3, [PATHS[n % 4], PATHS[(n + 1) % 4], PATHS[n % 4]] * (n + 1)) for n in range(6)]
    first.write_text("".join(json.dumps(row) + "\n" for row in rows))
    await bulk.import_files([first], workspace=tenant.workspace.slug, settings=settings)
    assert await Session.find({"workspace_id": workspace_id, "rollup_dirty": True}).count() == 6
    await assert_route_is_the_reference(client, tenant)
    await worker.catch_up(workspace_id)
    await assert_route_is_the_reference(client, tenant)

    second = tmp_path / "second.jsonl"
    second.write_text(json.dumps(line("imp2", 4, [PATHS[6]])) + "\n")
    await bulk.import_files([second], workspace=tenant.workspace.slug, settings=settings, on_conflict="replace")
    await assert_route_is_the_reference(client, tenant)
    await worker.catch_up(workspace_id)
    await assert_route_is_the_reference(client, tenant)

    pinned.at = DAY0 + timedelta(days=400)
    result = await prune(workspace_id, ended_before=pinned.at, batch_size=2)
    assert result.deleted == 6
    await assert_route_is_the_reference(client, tenant)
    assert await day_totals(workspace_id) == {}


async def test_the_pass_runs_under_its_lease_in_one_process_at_a_time(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    api = Api(client, tenant)
    sid = (await api.create())["session_id"]
    await api.post(sid, "artifacts", {"path": "src/a.py", "action": "created"}, 201)
    timed = settings.model_copy(update={"artifacts_rollup_interval_seconds": 5})
    assert await worker.run_pass(timed, "first") == 1  # the new session, with its artifact
    assert await worker.run_pass(timed, "second") is None  # the lease is the first one's
    await api.post(sid, "artifacts", {"path": "src/b.py", "action": "modified"}, 201)
    assert await worker.run_pass(timed, "first") == 1
    assert await worker.run_pass(timed, "first") == 0
    assert await route(client, tenant, Window(), 10) == [
        {"path": path, "touches": 1, "created": int(path == "src/a.py"), "modified": int(path == "src/b.py"),
         "deleted": 0, "sessions": 1}
        for path in ("src/a.py", "src/b.py")
    ]  # fmt: skip
