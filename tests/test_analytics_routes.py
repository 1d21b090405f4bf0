"""The analytics routes on a small hand-built data set, with the exact figures expected.

Two workspaces get sessions; the second one's data must never show in the first one's figures. The clock is
pinned so ``stale`` idle times are exact. The ``explain`` tests check that the hot pipelines are served by an
index (summary and agents from the index alone).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from handoff import clock
from handoff.analytics import expressions, pipelines, service
from handoff.db import MongoDatabase
from handoff.sessions.models import Session, SessionStatus
from tests.factories import Tenant

DAY0 = datetime(2026, 1, 10, tzinfo=UTC)
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


def _hours(n: float) -> timedelta:
    return timedelta(hours=n)


def _minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def _entry(n: int, at: datetime, kind: str = "info", message: str | None = None) -> dict[str, Any]:
    if kind == "action":
        return {"id": f"e{n}", "action": f"step {n}", "details": None, "timestamp": at}
    return {"id": f"e{n}", "message": message or f"{kind} {n}", "type": kind, "data": {}, "timestamp": at}


def _artifact(n: int, path: str, action: str, at: datetime) -> dict[str, Any]:
    return {"id": f"a{n}", "path": path, "action": action, "metadata": None, "timestamp": at}


def _session(
    workspace_id: str,
    session_id: str,
    *,
    agent: str | None,
    status: SessionStatus,
    started: datetime,
    ended: datetime | None = None,
    work_log: list[dict[str, Any]] | None = None,
    artifacts: list[dict[str, Any]] | None = None,
    last_active: datetime | None = None,
    **fields: Any,
) -> Session:
    log, files = work_log or [], artifacts or []
    return Session(
        workspace_id=workspace_id,
        session_id=session_id,
        agent_type=agent,
        status=status,
        started_at=started,
        ended_at=ended,
        duration_minutes=int((ended - started).total_seconds() // 60) if ended else None,
        last_active_at=last_active or ended or started,
        created_at=started,
        updated_at=ended or started,
        work_log=log,
        artifacts=files,
        action_count=len(log),
        error_count=sum(e.get("type") == "error" for e in log),
        checkpoint_count=sum(e.get("type") == "checkpoint" for e in log),
        artifact_count=len(files),
        **fields,
    )


def dataset(ws: str) -> list[Session]:
    """Seven sessions over three days (see the expected figures in the tests)."""
    s1, s2 = DAY0 + _hours(1), DAY0 + _hours(2)
    s3, s4 = DAY0 + timedelta(days=1, hours=3), DAY0 + timedelta(days=1, hours=5)
    s5, s6, s7 = DAY0 + timedelta(days=2), DAY0 + timedelta(days=2, hours=23), DAY0 + timedelta(days=2, hours=2)
    done, failed = SessionStatus.COMPLETED, SessionStatus.FAILED
    active, paused = SessionStatus.ACTIVE, SessionStatus.PAUSED
    return [
        _session(
            ws, "s1", agent="claude", status=done, started=s1, ended=s1 + _minutes(10),
            work_log=[_entry(1, s1, "action"), _entry(2, s1 + _minutes(2), "checkpoint"),
                      _entry(3, s1 + _minutes(5), "error", "boom 1")],
            artifacts=[_artifact(1, "src/a.py", "created", s1), _artifact(2, "src/b.py", "modified", s1),
                       _artifact(3, "src/a.py", "modified", s1 + _minutes(3))],
        ),
        _session(
            ws, "s2", agent="claude", status=failed, started=s2, ended=s2 + _minutes(30),
            work_log=[_entry(1, s2 + _minutes(20), "error", "boom 2"), _entry(2, s2 + _minutes(21))],
            artifacts=[_artifact(1, "src/a.py", "modified", s2)],
        ),
        _session(
            ws, "s3", agent="codex", status=done, started=s3, ended=s3 + _minutes(50),
            work_log=[_entry(1, s3, "action")],
            artifacts=[_artifact(1, "src/a.py", "modified", s3), _artifact(2, "src/c.py", "deleted", s3)],
        ),
        _session(
            ws, "s4", agent="codex", status=active, started=s4, last_active=NOW - _minutes(45),
            work_log=[_entry(1, s4), _entry(2, s4, "checkpoint"), _entry(3, s4, "warning"), _entry(4, s4, "action")],
        ),
        _session(
            ws, "s5", agent=None, status=paused, started=s5, paused_at=s5 + _hours(1),
            handoff_notes={"summary": "half done", "next_steps": ["finish"], "blockers": [], "context_for_next": {}},
        ),
        _session(
            ws, "s6", agent="claude", status=done, started=s6, ended=s6 + _minutes(90),
            work_log=[_entry(1, s6, "checkpoint"), _entry(2, s6, "success")],
        ),
        _session(ws, "s7", agent="codex", status=active, started=s7, last_active=NOW - _minutes(10),
                 work_log=[_entry(1, s7)]),
    ]  # fmt: skip


def noise(ws: str) -> list[Session]:
    """Another workspace's sessions, on the same days, with the same paths, errors and idle times."""
    start = DAY0 + _hours(1)
    return [
        _session(
            ws, f"x{n}", agent="claude" if n % 2 else "intruder", status=status, started=start + _minutes(n),
            ended=start + _minutes(n + 500) if status in (SessionStatus.COMPLETED, SessionStatus.FAILED) else None,
            last_active=NOW - _hours(5),
            work_log=[_entry(1, NOW, "error", "not yours"), _entry(2, NOW, "checkpoint")],
            artifacts=[_artifact(1, "src/a.py", "deleted", NOW)],
            handoff_notes={"summary": "not yours", "next_steps": [], "blockers": [], "context_for_next": {}},
            paused_at=start if status == SessionStatus.PAUSED else None,
        )
        for n, status in enumerate(SessionStatus)
    ]  # fmt: skip


@pytest.fixture
async def data(database: MongoDatabase, tenant: Tenant, other_tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    await Session.insert_many(dataset(tenant.workspace.workspace_id) + noise(other_tenant.workspace.workspace_id))


async def _get(client: httpx.AsyncClient, tenant: Tenant, route: str, **params: Any) -> Any:
    response = await client.get(f"/v1/analytics/{route}", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


# Summary and agents -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("data")
async def test_summary_counts_sessions_counters_and_duration_percentiles(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert await _get(client, tenant, "summary") == {
        "sessions": {
            "total": 7,
            "by_status": {"active": 2, "paused": 1, "completed": 3, "failed": 1},
            "by_agent_type": {"claude": 3, "codex": 3, "unknown": 1},
        },
        # ended durations 10, 30, 50, 90: nearest rank p50 = 2nd value, p95 = 4th
        "duration_minutes": {"avg": 45.0, "p50": 30, "p95": 90},
        "actions": 13,
        "errors": 2,
        "checkpoints": 3,
        "artifacts": 6,
    }


@pytest.mark.usefixtures("data")
async def test_summary_window_selects_by_started_at_since_inclusive_until_exclusive(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # s3 starts 2026-01-11T03:00, s4 at 05:00; s5 starts exactly at until and is left out
    body = await _get(client, tenant, "summary", since="2026-01-11T03:00:00Z", until="2026-01-12")
    assert body["sessions"] == {
        "total": 2,
        "by_status": {"active": 1, "paused": 0, "completed": 1, "failed": 0},
        "by_agent_type": {"codex": 2},
    }
    assert body["duration_minutes"] == {"avg": 50.0, "p50": 50, "p95": 50}
    assert (body["actions"], body["errors"], body["checkpoints"], body["artifacts"]) == (5, 0, 1, 2)


@pytest.mark.usefixtures("data")
async def test_other_workspace_sees_only_its_own_sessions(client: httpx.AsyncClient, other_tenant: Tenant) -> None:
    body = await _get(client, other_tenant, "summary")
    assert body["sessions"]["total"] == 4
    assert body["duration_minutes"] == {"avg": 500.0, "p50": 500, "p95": 500}
    agents = await _get(client, other_tenant, "agents")
    assert {item["agent_type"] for item in agents["items"]} == {"claude", "intruder"}


@pytest.mark.usefixtures("data")
async def test_agents_success_rate_and_averages_per_agent_type(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await _get(client, tenant, "agents"))["items"] == [
        {
            "agent_type": "claude",
            "sessions": 3,
            "completed": 2,
            "failed": 1,
            "success_rate": 0.67,
            "avg_duration_minutes": 43.33,
            "avg_actions": 2.33,
            "errors": 2,
        },
        {
            "agent_type": "codex",
            "sessions": 3,
            "completed": 1,
            "failed": 0,
            "success_rate": 1.0,
            "avg_duration_minutes": 50.0,
            "avg_actions": 2.0,
            "errors": 0,
        },
        {
            "agent_type": None,
            "sessions": 1,
            "completed": 0,
            "failed": 0,
            "success_rate": 0,
            "avg_duration_minutes": 0,
            "avg_actions": 0,
            "errors": 0,
        },
    ]


@pytest.mark.usefixtures("data")
async def test_agents_window(client: httpx.AsyncClient, tenant: Tenant) -> None:
    items = (await _get(client, tenant, "agents", until="2026-01-10T02:00:00+00:00"))["items"]
    assert items == [
        {
            "agent_type": "claude",
            "sessions": 1,
            "completed": 1,
            "failed": 0,
            "success_rate": 1.0,
            "avg_duration_minutes": 10.0,
            "avg_actions": 3.0,
            "errors": 1,
        }
    ]


# Activity -----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("data")
async def test_activity_by_day_counts_starts_and_ends_in_their_own_buckets(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert (await _get(client, tenant, "activity"))["items"] == [
        {"bucket_start": "2026-01-10T00:00:00.000000+00:00", "started": 2, "completed": 1, "failed": 1},
        {"bucket_start": "2026-01-11T00:00:00.000000+00:00", "started": 2, "completed": 1, "failed": 0},
        {"bucket_start": "2026-01-12T00:00:00.000000+00:00", "started": 3, "completed": 0, "failed": 0},
        {"bucket_start": "2026-01-13T00:00:00.000000+00:00", "started": 0, "completed": 1, "failed": 0},
    ]


@pytest.mark.usefixtures("data")
async def test_activity_by_hour_with_window(client: httpx.AsyncClient, tenant: Tenant) -> None:
    items = (await _get(client, tenant, "activity", bucket="hour", since="2026-01-12T01:00:00Z"))["items"]
    assert items == [
        {"bucket_start": "2026-01-12T02:00:00.000000+00:00", "started": 1, "completed": 0, "failed": 0},
        {"bucket_start": "2026-01-12T23:00:00.000000+00:00", "started": 1, "completed": 0, "failed": 0},
        {"bucket_start": "2026-01-13T00:00:00.000000+00:00", "started": 0, "completed": 1, "failed": 0},
    ]
    first_day = (await _get(client, tenant, "activity", bucket="hour", until="2026-01-11"))["items"]
    assert first_day == [
        {"bucket_start": "2026-01-10T01:00:00.000000+00:00", "started": 1, "completed": 1, "failed": 0},
        {"bucket_start": "2026-01-10T02:00:00.000000+00:00", "started": 1, "completed": 0, "failed": 1},
    ]


# Artifacts and errors -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("data")
async def test_artifacts_most_touched_first_with_distinct_sessions(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await _get(client, tenant, "artifacts"))["items"] == [
        {"path": "src/a.py", "touches": 4, "created": 1, "modified": 3, "deleted": 0, "sessions": 3},
        {"path": "src/b.py", "touches": 1, "created": 0, "modified": 1, "deleted": 0, "sessions": 1},
        {"path": "src/c.py", "touches": 1, "created": 0, "modified": 0, "deleted": 1, "sessions": 1},
    ]
    limited = (await _get(client, tenant, "artifacts", limit=1, since="2026-01-10T02:00:00Z"))["items"]
    assert limited == [{"path": "src/a.py", "touches": 2, "created": 0, "modified": 2, "deleted": 0, "sessions": 2}]


@pytest.mark.usefixtures("data")
async def test_errors_newest_first_with_limit_and_window(client: httpx.AsyncClient, tenant: Tenant) -> None:
    boom2 = {
        "session_id": "s2",
        "agent_type": "claude",
        "message": "boom 2",
        "timestamp": "2026-01-10T02:20:00.000000+00:00",
    }
    boom1 = {
        "session_id": "s1",
        "agent_type": "claude",
        "message": "boom 1",
        "timestamp": "2026-01-10T01:05:00.000000+00:00",
    }
    assert (await _get(client, tenant, "errors"))["items"] == [boom2, boom1]
    assert (await _get(client, tenant, "errors", limit=1))["items"] == [boom2]
    assert (await _get(client, tenant, "errors", until="2026-01-10T02:00:00Z"))["items"] == [boom1]


async def test_errors_read_only_recently_active_sessions_and_stay_exact(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    rng = random.Random(7)
    ws, sessions, every = tenant.workspace.workspace_id, [], []
    for n in range(12):
        at = [DAY0 + _minutes(rng.randrange(0, 600)) for _ in range(2)]
        log = [_entry(i, when, "error", f"error {n}.{i}") for i, when in enumerate(at)] + [_entry(9, DAY0, "action")]
        # idle a while after the last entry, so activity order and error order disagree
        last = max(at) + _minutes(rng.randrange(0, 300))
        sessions.append(
            _session(ws, f"e{n:02d}", agent="a", status=SessionStatus.ACTIVE, started=DAY0, work_log=log,
                     last_active=last)
        )  # fmt: skip
        every += [(when, f"e{n:02d}", f"error {n}.{i}") for i, when in enumerate(at)]
    await Session.insert_many(sessions)
    every.sort(key=lambda error: (-error[0].timestamp(), error[1], error[2]))
    for limit in (1, 3, 5, 24, 30):
        items = (await _get(client, tenant, "errors", limit=limit))["items"]
        assert [(item["session_id"], item["message"]) for item in items] == [(s, m) for _, s, m in every[:limit]]
    bounded = await service.errors_pipeline(ws, limit=3, window=expressions.ALL_TIME)
    verdict = await service.explain(bounded)
    assert "analytics_with_errors" in verdict.indexes  # and one of the (here empty) sealed pages
    assert verdict.docs_examined < 12


# Stale and handoffs -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("data")
async def test_stale_lists_active_sessions_idle_longer_than_the_threshold(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    s4 = {"session_id": "s4", "agent_type": "codex", "last_active_at": "2026-01-20T11:15:00.000000+00:00"}
    assert (await _get(client, tenant, "stale"))["items"] == [{**s4, "idle_minutes": 45}]
    assert (await _get(client, tenant, "stale", idle_minutes=45))["items"] == []
    assert (await _get(client, tenant, "stale", idle_minutes=5))["items"] == [
        {**s4, "idle_minutes": 45},
        {"session_id": "s7", "agent_type": "codex", "last_active_at": "2026-01-20T11:50:00.000000+00:00",
         "idle_minutes": 10},
    ]  # fmt: skip
    assert (await _get(client, tenant, "stale", idle_minutes=5, since="2026-01-12"))["items"][0]["session_id"] == "s7"


@pytest.mark.usefixtures("data")
async def test_handoffs_lists_paused_sessions_with_notes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await _get(client, tenant, "handoffs"))["items"] == [
        {
            "session_id": "s5",
            "agent_type": None,
            "summary": "half done",
            "next_steps": ["finish"],
            "blockers": [],
            "paused_since": "2026-01-12T01:00:00.000000+00:00",
        }
    ]
    assert (await _get(client, tenant, "handoffs", until="2026-01-12"))["items"] == []


async def test_handoffs_skip_replayed_sessions_and_fall_back_to_updated_at(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ws = tenant.workspace.workspace_id
    notes = {"summary": "over to you", "next_steps": [], "blockers": ["flaky CI"], "context_for_next": {}}
    paused = SessionStatus.PAUSED
    await Session.insert_many(
        [
            _session(ws, "waiting", agent="a", status=paused, started=DAY0, paused_at=DAY0 + _hours(2),
                     handoff_notes=notes),
            _session(ws, "legacy", agent="a", status=paused, started=DAY0, handoff_notes=notes),
            _session(ws, "taken", agent="a", status=paused, started=DAY0, paused_at=DAY0, handoff_notes=notes),
            _session(ws, "taker", agent="b", status=SessionStatus.ACTIVE, started=DAY0 + _hours(3),
                     replayed_from="taken"),
            _session(ws, "no-notes", agent="a", status=paused, started=DAY0, paused_at=DAY0),
        ]
    )  # fmt: skip
    items = (await _get(client, tenant, "handoffs"))["items"]
    assert [(item["session_id"], item["paused_since"]) for item in items] == [
        ("legacy", "2026-01-10T00:00:00.000000+00:00"),  # no paused_at: updated_at
        ("waiting", "2026-01-10T02:00:00.000000+00:00"),
    ]
    assert items[1]["blockers"] == ["flaky CI"]


# Empty workspaces and bad input -------------------------------------------------------------------------------


async def test_empty_workspace_answers_zeros_and_empty_lists(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert await _get(client, tenant, "summary") == {
        "sessions": {"total": 0, "by_status": {"active": 0, "paused": 0, "completed": 0, "failed": 0},
                     "by_agent_type": {}},
        "duration_minutes": {"avg": 0, "p50": 0, "p95": 0},
        "actions": 0, "errors": 0, "checkpoints": 0, "artifacts": 0,
    }  # fmt: skip
    for route in ("agents", "activity", "artifacts", "errors", "stale", "handoffs"):
        assert await _get(client, tenant, route) == {"items": []}, route


async def test_sessions_that_never_ended_give_zero_rates_and_durations(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ws = tenant.workspace.workspace_id
    await Session.insert_many([_session(ws, "open", agent="a", status=SessionStatus.ACTIVE, started=DAY0)])
    summary = await _get(client, tenant, "summary")
    assert summary["duration_minutes"] == {"avg": 0, "p50": 0, "p95": 0}
    assert (await _get(client, tenant, "agents"))["items"][0]["success_rate"] == 0


@pytest.mark.parametrize(
    ("durations", "expected"),
    [
        ([7], {"avg": 7.0, "p50": 7, "p95": 7}),
        ([5, 1], {"avg": 3.0, "p50": 1, "p95": 5}),
        (list(range(20, 0, -1)), {"avg": 10.5, "p50": 10, "p95": 19}),
        ([0, 0, 1, 2, 3, 5, 8, 13, 21, 34, 55], {"avg": 12.91, "p50": 5, "p95": 55}),
    ],
)
async def test_duration_percentiles_are_nearest_rank(
    client: httpx.AsyncClient, tenant: Tenant, durations: list[int], expected: dict[str, Any]
) -> None:
    ws = tenant.workspace.workspace_id
    await Session.insert_many(
        [
            _session(ws, f"d{n}", agent="a", status=SessionStatus.COMPLETED, started=DAY0, ended=DAY0 + _minutes(m))
            for n, m in enumerate(durations)
        ]
    )
    assert (await _get(client, tenant, "summary"))["duration_minutes"] == expected


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("summary", {"since": "yesterday"}),
        ("summary", {"until": "2026-13-01"}),
        ("agents", {"since": "2026-01-12", "until": "2026-01-11"}),
        ("agents", {"since": "2026-01-12T00:00:00Z", "until": "2026-01-12"}),
        ("activity", {"bucket": "week"}),
        ("artifacts", {"limit": 0}),
        ("artifacts", {"limit": 101}),
        ("errors", {"limit": 201}),
        ("stale", {"idle_minutes": 0}),
        ("stale", {"idle_minutes": "soon"}),
        ("handoffs", {"limit": -1}),
    ],
)
async def test_invalid_parameters_are_422_problems(
    client: httpx.AsyncClient, tenant: Tenant, route: str, params: dict[str, Any]
) -> None:
    response = await client.get(f"/v1/analytics/{route}", params=params, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"]


async def test_analytics_needs_an_api_key(client: httpx.AsyncClient, database: MongoDatabase) -> None:
    assert (await client.get("/v1/analytics/summary")).status_code == 401


# Plans --------------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("data")
@pytest.mark.parametrize("route", ["summary", "agents", "errors", "stale", "artifacts"])
async def test_hot_pipelines_are_served_by_an_index(tenant: Tenant, route: str) -> None:
    pipeline = (await service.route_pipelines(tenant.workspace.workspace_id))[route]
    hint = pipelines.ARTIFACTS_INDEX if route == "artifacts" else None
    verdict = await service.explain(pipeline, hint=hint)
    assert verdict.uses_index, verdict
    assert "COLLSCAN" not in verdict.stages
    if route in ("summary", "agents"):
        assert verdict.covered, verdict
        assert verdict.indexes == ["analytics_rollup"]
    if route == "errors":  # and the sealed pages holding errors, by their session's start
        assert "analytics_with_errors" in verdict.indexes
        assert verdict.docs_examined == 2  # only s1 and s2 have errors
    if route == "stale":
        assert verdict.indexes == ["idle_by_status"]
    if route == "artifacts":  # artifact_count > 0 is checked on the index keys: s4 to s7 are never fetched
        assert "analytics_rollup" in verdict.indexes
        assert verdict.docs_examined == 3


@pytest.mark.usefixtures("data")
async def test_stale_in_a_window_skips_sessions_last_active_before_it(tenant: Tenant) -> None:
    # s4 is active and idle 45 minutes, but last active before this window starts, so it cannot have started in
    # it: the walk of idle_by_status must not reach it (before, every such session's document was read).
    window = service.parse_window(since=(NOW - _minutes(1)).isoformat())
    pipeline = (await service.route_pipelines(tenant.workspace.workspace_id, window=window))["stale"]
    verdict = await service.explain(pipeline)
    assert verdict.indexes == ["idle_by_status"]
    assert (verdict.keys_examined, verdict.docs_examined) == (0, 0)


@pytest.mark.parametrize("bucket", list(expressions.Bucket))
async def test_bucket_arithmetic_matches_date_trunc(database: MongoDatabase, bucket: expressions.Bucket) -> None:
    dates = [
        datetime(2026, 1, 10, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
        datetime(1969, 12, 31, 22, 30, tzinfo=UTC),
        datetime(1900, 3, 1, 5, 15, tzinfo=UTC),
        datetime(2100, 12, 31, 23, 0, 1, tzinfo=UTC),
    ]
    cursor = await database.aggregate(
        [
            {"$documents": [{"at": at} for at in dates] + [{"at": None}]},
            {
                "$project": {
                    "ours": expressions.bucket_start("at", bucket),
                    "trunc": {"$dateTrunc": {"date": "$at", "unit": bucket.value}},
                }
            },
        ]
    )
    rows = await cursor.to_list(None)
    assert [row["ours"] for row in rows] == [row["trunc"] for row in rows]
    assert rows[-1]["ours"] is None
