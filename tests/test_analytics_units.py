"""The pure parts of analytics: the since/until window, the lineage shaping, reading an explain document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from handoff.analytics import expressions, pipelines, service
from handoff.analytics.expressions import Bucket, Window
from handoff.errors import Invalid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-12", datetime(2026, 1, 12, tzinfo=UTC)),
        ("2026-01-12T10:00:00Z", datetime(2026, 1, 12, 10, tzinfo=UTC)),
        ("2026-01-12T10:00:00+02:00", datetime(2026, 1, 12, 8, tzinfo=UTC)),
        ("2026-01-12T10:00:00", datetime(2026, 1, 12, 10, tzinfo=UTC)),
        ("2026-01-12T10:00:00.250-01:30", datetime(2026, 1, 12, 11, 30, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_window_bounds_are_iso_8601_read_as_utc(text: str, expected: datetime) -> None:
    parsed = service.parse_instant(text, "since")
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize(
    ("since", "until"),
    [("soon", None), (None, "2026-02-30"), ("2026-01-02", "2026-01-01"), (None, "9999-12-31T23:00:00-05:00")],
)
def test_bad_or_inverted_window_is_invalid(since: str | None, until: str | None) -> None:
    with pytest.raises(Invalid) as caught:
        service.parse_window(since, until)
    assert caught.value.errors


def test_every_pipeline_starts_with_the_workspace() -> None:
    window = Window(since=datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime(2026, 2, 1, tzinfo=UTC)
    windowed = {
        "summary": pipelines.summary("ws_1", window),
        "agents": pipelines.agents("ws_1", window),
        "activity": pipelines.activity("ws_1", window, Bucket.HOUR),
        "artifacts": pipelines.artifacts("ws_1", window, 20),
        "errors": pipelines.errors("ws_1", window, 50, newest_sessions=50),
        "errors bounded": pipelines.errors("ws_1", window, 50, active_since=now),
        "stale": pipelines.stale("ws_1", window, now=now, idle_minutes=30, limit=100),
        "handoffs": pipelines.handoffs("ws_1", window, 100),
    }
    for name, pipeline in windowed.items():
        first = pipeline[0]["$match"]
        assert first["workspace_id"] == "ws_1", name
        assert first["started_at"] == {"$gte": window.since}, name
    for ancestors in (True, False):
        assert pipelines.lineage("ws_1", "s", ancestors=ancestors)[0]["$match"] == {
            "workspace_id": "ws_1",
            "session_id": "s",
        }
    assert "started_at" not in expressions.match_sessions("ws_1", expressions.ALL_TIME)["$match"]
    assert windowed["errors bounded"][0]["$match"]["last_active_at"] == {"$gte": now}
    # stale: idle since before the cutoff, and (implied by the window) last active no earlier than its start
    assert windowed["stale"][0]["$match"]["last_active_at"] == {
        "$lt": datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        "$gte": window.since,
    }
    all_time = pipelines.stale("ws_1", expressions.ALL_TIME, now=now, idle_minutes=30, limit=100)
    assert all_time[0]["$match"]["last_active_at"] == {"$lt": datetime(2026, 1, 31, 23, 30, tzinfo=UTC)}


def _row(session_id: str, replayed_from: str | None, node: dict[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"session_id": session_id, "replayed_from": replayed_from}
    if node is not None:
        row["node"] = node
    return row


def _node(session_id: str, replayed_from: str | None, depth: int) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "status": "completed",
        "agent_type": None,
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "ended_at": None,
        "replayed_from": replayed_from,
        "depth": depth,
    }


def test_a_deleted_parent_is_the_only_ancestor_known() -> None:
    lineage = service.lineage_view([_row("c", "gone")], [_row("c", "gone")])
    assert lineage.model_dump(mode="json") == {
        "session_id": "c",
        "ancestors": [{"session_id": "gone", "deleted": True}],
        "descendants": [],
    }


def test_ancestors_end_at_the_original_or_the_deleted_one() -> None:
    up = [_row("c", "b", _node("a", None, 2)), _row("c", "b", _node("b", "a", 1))]
    assert [n.session_id for n in service.lineage_view(up, [_row("c", "b")]).ancestors] == ["a", "b"]
    up = [_row("c", "b", _node("a", "z", 2)), _row("c", "b", _node("b", "a", 1))]
    ancestors = service.lineage_view(up, [_row("c", "b")]).model_dump(mode="json")["ancestors"]
    assert [(n["session_id"], n["deleted"]) for n in ancestors] == [("z", True), ("a", False), ("b", False)]


def test_plan_verdict_reads_classic_and_slot_based_explains() -> None:
    classic = {
        "stages": [
            {
                "$cursor": {
                    "queryPlanner": {
                        "winningPlan": {
                            "stage": "FETCH",
                            "inputStage": {"stage": "IXSCAN", "indexName": "idle_by_status"},
                        },
                        "rejectedPlans": [{"stage": "COLLSCAN"}],
                    },
                    "executionStats": {"totalDocsExamined": 3, "totalKeysExamined": 4},
                }
            },
            {"$sort": {}},
        ]
    }
    verdict = service.plan_verdict(classic)
    assert (verdict.stages, verdict.indexes) == (["FETCH", "IXSCAN"], ["idle_by_status"])
    assert (verdict.docs_examined, verdict.keys_examined, verdict.uses_index, verdict.covered) == (3, 4, True, False)

    sbe = {
        "queryPlanner": {
            "winningPlan": {
                "queryPlan": {"stage": "GROUP", "inputStage": {"stage": "COLLSCAN"}},
                "slotBasedPlan": {"stages": "..."},
            }
        },
        "executionStats": {"totalDocsExamined": 10, "totalKeysExamined": 0},
    }
    verdict = service.plan_verdict(sbe)
    assert verdict.stages == ["GROUP", "COLLSCAN"]
    assert not verdict.uses_index
