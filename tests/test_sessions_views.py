"""The pure parts of sessions: derived views (durations, progress, replay seed, counters) and the lifecycle table.

No database: these are plain functions from data to data, so every edge is checked exactly and quickly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handoff.sessions import views
from handoff.sessions.lifecycle import Operation, accepted_statuses, is_ended, moves_to, next_status
from handoff.sessions.models import SessionStatus

T0 = datetime(2026, 11, 24, 15, 30, 0, 123000, tzinfo=UTC)

ACTIVE, PAUSED = SessionStatus.ACTIVE, SessionStatus.PAUSED
COMPLETED, FAILED = SessionStatus.COMPLETED, SessionStatus.FAILED


# Durations ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (None, "Unknown"),
        (0, "0m"),
        (1, "1m"),
        (42, "42m"),
        (59, "59m"),
        (60, "1h 0m"),
        (61, "1h 1m"),
        (125, "2h 5m"),
        (1439, "23h 59m"),
        (1440, "24h 0m"),
        (6000, "100h 0m"),
    ],
)
def test_duration_text_is_unknown_minutes_or_hours_and_minutes(minutes: int | None, text: str) -> None:
    assert views.duration_text(minutes) == text


def test_duration_minutes_without_a_start_is_none() -> None:
    assert views.duration_minutes(None, None, T0) is None
    assert views.duration_minutes(None, T0, T0) is None


@pytest.mark.parametrize(
    ("elapsed", "minutes"),
    [
        (timedelta(0), 0),
        (timedelta(seconds=59, milliseconds=999), 0),
        (timedelta(seconds=60), 1),
        (timedelta(minutes=42, seconds=30), 42),
        (timedelta(hours=2, minutes=5, seconds=59), 125),
    ],
)
def test_duration_minutes_of_an_ended_session_counts_whole_minutes_to_its_end(elapsed: timedelta, minutes: int) -> None:
    far_later = T0 + timedelta(days=3)
    assert views.duration_minutes(T0, T0 + elapsed, far_later) == minutes


def test_duration_minutes_of_a_running_session_counts_to_now() -> None:
    assert views.duration_minutes(T0, None, T0 + timedelta(minutes=17, seconds=5)) == 17


def test_duration_minutes_never_negative_when_the_end_precedes_the_start() -> None:
    assert views.duration_minutes(T0, T0 - timedelta(minutes=5), T0) == 0
    assert views.duration_minutes(T0, None, T0 - timedelta(hours=1)) == 0


def test_duration_minutes_reads_naive_stored_times_as_utc() -> None:
    naive_start = T0.replace(tzinfo=None)
    assert views.duration_minutes(naive_start, (T0 + timedelta(minutes=3)).replace(tzinfo=None), T0) == 3
    assert views.duration_minutes(naive_start, None, T0 + timedelta(minutes=9)) == 9


# Progress ----------------------------------------------------------------------------------------------------


def test_progress_summary_of_an_empty_log_is_exactly_no_work_recorded() -> None:
    summary = views.progress_summary(total=0, checkpoints=0, errors=0, last_entry=None)

    assert summary.model_dump(mode="json") == {"completed_steps": 0, "last_action": None, "summary": "No work recorded"}


def test_progress_summary_without_a_last_entry_is_no_work_recorded() -> None:
    summary = views.progress_summary(total=3, checkpoints=1, errors=0, last_entry=None)

    assert summary.model_dump(mode="json") == {"completed_steps": 0, "last_action": None, "summary": "No work recorded"}


def test_progress_summary_names_the_last_action_entry() -> None:
    last = {"id": "a", "action": "ran tests", "details": None, "timestamp": T0}

    summary = views.progress_summary(total=7, checkpoints=2, errors=1, last_entry=last)

    assert summary.model_dump(mode="json") == {
        "completed_steps": 7,
        "checkpoint_count": 2,
        "error_count": 1,
        "last_action": "ran tests",
        "last_action_at": "2026-11-24T15:30:00.123000+00:00",
        "summary": "7 actions recorded, 2 checkpoints, 1 errors",
    }


def test_progress_summary_falls_back_to_the_message_of_a_typed_entry() -> None:
    last = {"id": "m", "message": "schema migrated", "type": "checkpoint", "data": {}, "timestamp": T0}

    summary = views.progress_summary(total=1, checkpoints=1, errors=0, last_entry=last)

    assert summary.model_dump(mode="json") == {
        "completed_steps": 1,
        "checkpoint_count": 1,
        "error_count": 0,
        "last_action": "schema migrated",
        "last_action_at": "2026-11-24T15:30:00.123000+00:00",
        "summary": "1 actions recorded, 1 checkpoints, 0 errors",
    }


# Counters ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "increments"),
    [
        ({"action": "edit"}, {"action_count": 1, "checkpoint_count": 0, "error_count": 0}),
        ({"message": "m", "type": "info"}, {"action_count": 1, "checkpoint_count": 0, "error_count": 0}),
        ({"message": "m", "type": "warning"}, {"action_count": 1, "checkpoint_count": 0, "error_count": 0}),
        ({"message": "m", "type": "success"}, {"action_count": 1, "checkpoint_count": 0, "error_count": 0}),
        ({"message": "m", "type": "decision"}, {"action_count": 1, "checkpoint_count": 0, "error_count": 0}),
        ({"message": "m", "type": "checkpoint"}, {"action_count": 1, "checkpoint_count": 1, "error_count": 0}),
        ({"message": "m", "type": "error"}, {"action_count": 1, "checkpoint_count": 0, "error_count": 1}),
    ],
)
def test_increments_count_every_entry_and_its_checkpoint_or_error(
    entry: dict[str, Any], increments: dict[str, int]
) -> None:
    assert views.sum_increments([entry]) == increments


def test_sum_increments_and_last_checkpoint_of_a_batch() -> None:
    entries = [
        {"id": "1", "message": "a", "type": "checkpoint"},
        {"id": "2", "message": "b", "type": "error"},
        {"id": "3", "action": "c"},
        {"id": "4", "message": "d", "type": "checkpoint"},
        {"id": "5", "message": "e", "type": "info"},
    ]

    assert views.sum_increments(entries) == {"action_count": 5, "checkpoint_count": 2, "error_count": 1}
    assert views.sum_increments([]) == {"action_count": 0, "checkpoint_count": 0, "error_count": 0}
    assert views.last_checkpoint(entries) == entries[3]
    assert views.last_checkpoint(entries[1:3]) is None


# Replay seed -------------------------------------------------------------------------------------------------


def _original(**overrides: Any) -> dict[str, Any]:
    checkpoint = {"id": "cp1", "message": "tests green", "type": "checkpoint", "data": {"n": 1}, "timestamp": T0}
    doc = {
        "session_id": "sess_orig",
        "status": "completed",
        "started_at": T0,
        "context_summary": {"branch": "main"},
        "handoff_notes": {"summary": "s", "next_steps": ["x"], "blockers": [], "context_for_next": {}},
        "action_count": 4,
        "checkpoint_count": 1,
        "error_count": 2,
        "last_checkpoint": checkpoint,
        "last_entry": {"id": "e4", "action": "deployed", "details": None, "timestamp": T0 + timedelta(minutes=1)},
    }
    return doc | overrides


def test_replay_seed_carries_context_progress_checkpoint_and_one_info_entry() -> None:
    now = T0 + timedelta(hours=1)

    seed = views.replay_seed(_original(), now=now, replay_entry_id="r1")

    entry = {
        "id": "r1",
        "message": "Replayed from session sess_orig",
        "type": "info",
        "data": {"original_session": "sess_orig", "original_actions": 4, "original_checkpoints": 1},
        "timestamp": now,
    }
    assert seed == {
        "context_summary": {
            "replayed_from": "sess_orig",
            "original_started_at": "2026-11-24T15:30:00.123000+00:00",
            "original_status": "completed",
            "inherited_context": {"branch": "main"},
            "replay_checkpoint": {
                "id": "cp1",
                "message": "tests green",
                "type": "checkpoint",
                "data": {"n": 1},
                "timestamp": "2026-11-24T15:30:00.123000+00:00",
            },
            "original_progress": {
                "completed_steps": 4,
                "checkpoint_count": 1,
                "error_count": 2,
                "last_action": "deployed",
                "last_action_at": "2026-11-24T15:31:00.123000+00:00",
                "summary": "4 actions recorded, 1 checkpoints, 2 errors",
            },
        },
        "work_log": [entry],
        "action_count": 1,
        "checkpoint_count": 0,
        "error_count": 0,
        "last_checkpoint": None,
        "handoff_notes": {"summary": "s", "next_steps": ["x"], "blockers": [], "context_for_next": {}},
        "replayed_from": "sess_orig",
    }


def test_replay_seed_of_an_empty_session_has_no_checkpoint_and_no_work_recorded() -> None:
    original = {"session_id": "sess_empty", "status": "active", "started_at": T0}

    seed = views.replay_seed(original, now=T0, replay_entry_id="r2")

    assert seed["context_summary"] == {
        "replayed_from": "sess_empty",
        "original_started_at": "2026-11-24T15:30:00.123000+00:00",
        "original_status": "active",
        "inherited_context": None,
        "replay_checkpoint": None,
        "original_progress": {"completed_steps": 0, "last_action": None, "summary": "No work recorded"},
    }
    assert seed["work_log"][0]["data"] == {
        "original_session": "sess_empty",
        "original_actions": 0,
        "original_checkpoints": 0,
    }
    assert seed["handoff_notes"] is None


# Other views -------------------------------------------------------------------------------------------------


def test_work_log_entry_keeps_the_shape_it_was_stored_with() -> None:
    action = views.work_log_entry({"id": "a", "action": "edit", "details": None, "timestamp": T0})
    typed = views.work_log_entry({"id": "t", "message": "m", "type": "info", "timestamp": T0})

    assert action.model_dump(mode="json") == {
        "id": "a",
        "action": "edit",
        "details": None,
        "timestamp": "2026-11-24T15:30:00.123000+00:00",
    }
    assert typed.model_dump(mode="json") == {
        "id": "t",
        "message": "m",
        "type": "info",
        "data": {},
        "timestamp": "2026-11-24T15:30:00.123000+00:00",
    }


# Lifecycle table ---------------------------------------------------------------------------------------------

#: api.md's table, row by row: (operation, from status) -> the status after it, or None for 409.
TABLE: dict[tuple[Operation, SessionStatus], SessionStatus | None] = {
    (Operation.PAUSE, ACTIVE): PAUSED,
    (Operation.PAUSE, PAUSED): PAUSED,
    (Operation.PAUSE, COMPLETED): None,
    (Operation.PAUSE, FAILED): None,
    (Operation.RESUME, ACTIVE): ACTIVE,
    (Operation.RESUME, PAUSED): ACTIVE,
    (Operation.RESUME, COMPLETED): None,
    (Operation.RESUME, FAILED): None,
    (Operation.HANDOFF, ACTIVE): PAUSED,
    (Operation.HANDOFF, PAUSED): PAUSED,
    (Operation.HANDOFF, COMPLETED): None,
    (Operation.HANDOFF, FAILED): None,
    (Operation.WRITE, ACTIVE): ACTIVE,
    (Operation.WRITE, PAUSED): PAUSED,
    (Operation.WRITE, COMPLETED): None,
    (Operation.WRITE, FAILED): None,
}


@pytest.mark.parametrize(("operation", "current"), list(TABLE))
def test_lifecycle_table_row(operation: Operation, current: SessionStatus) -> None:
    expected = TABLE[operation, current]
    if expected is None:
        assert current.value not in accepted_statuses(operation)
        with pytest.raises(ValueError, match="not allowed"):
            next_status(operation, current)
    else:
        assert current.value in accepted_statuses(operation)
        assert next_status(operation, current) is expected


@pytest.mark.parametrize("current", [ACTIVE, PAUSED])
@pytest.mark.parametrize("requested", [COMPLETED, FAILED])
def test_lifecycle_end_of_an_open_session_takes_the_requested_ended_status(
    current: SessionStatus, requested: SessionStatus
) -> None:
    assert next_status(Operation.END, current, requested) is requested


@pytest.mark.parametrize("current", [ACTIVE, PAUSED])
@pytest.mark.parametrize("requested", [None, ACTIVE, PAUSED])
def test_lifecycle_end_needs_an_ended_status(current: SessionStatus, requested: SessionStatus | None) -> None:
    with pytest.raises(ValueError, match="completed or failed"):
        next_status(Operation.END, current, requested)


@pytest.mark.parametrize("current", [COMPLETED, FAILED])
@pytest.mark.parametrize("requested", [COMPLETED, FAILED])
def test_lifecycle_end_of_an_ended_session_is_refused(current: SessionStatus, requested: SessionStatus) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        next_status(Operation.END, current, requested)


def test_lifecycle_every_operation_accepts_exactly_the_open_statuses() -> None:
    for operation in Operation:
        assert sorted(accepted_statuses(operation)) == ["active", "paused"]


@pytest.mark.parametrize(
    ("status", "ended"),
    [(ACTIVE, False), (PAUSED, False), (COMPLETED, True), (FAILED, True), ("completed", True), ("active", False)],
)
def test_is_ended_only_for_completed_and_failed(status: SessionStatus | str, ended: bool) -> None:
    assert is_ended(status) is ended


def test_moves_to_names_the_fixed_targets_and_refuses_the_others() -> None:
    assert moves_to(Operation.PAUSE) is SessionStatus.PAUSED
    assert moves_to(Operation.RESUME) is SessionStatus.ACTIVE
    assert moves_to(Operation.HANDOFF) is SessionStatus.PAUSED
    for operation in (Operation.END, Operation.WRITE):
        with pytest.raises(ValueError, match="fixed status"):
            moves_to(operation)
