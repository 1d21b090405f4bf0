"""Import files to session documents, without a database: the readers, the row mapping, the reject messages.

What the mapping derives (counters, ``last_checkpoint``, ``payload_bytes``, ``duration_minutes``) is checked
against the functions the appends use, so an imported session carries exactly what the API would have stored.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.codec_options import CodecOptions

from handoff.bulk.entries import (
    PAYLOAD_GROWTH,
    RowError,
    artifact_entries,
    artifact_entry,
    row_facts,
    work_log_entries,
    work_log_entry,
)
from handoff.bulk.formats import FileReader, looks_like_laravel, parse_line
from handoff.bulk.mapping import Target, from_export, from_laravel, to_bson
from handoff.bulk.prepare import default_workers
from handoff.config import Settings
from handoff.sessions import notables, views
from handoff.sessions.limits import serialized_size, stored_size
from handoff.sessions.misses import page_bounds
from handoff.sessions.seals import paged_layout

KINDS = ("work_log", "artifacts")
CODEC = CodecOptions(tz_aware=True)

DATA = Path(__file__).parent / "data"
T0 = "2026-01-05T10:00:00+00:00"


@pytest.fixture
def target() -> Target:
    settings = Settings(mongodb_url="mongodb://unused", data_dir=Path("/nonexistent"))
    return Target(workspace_id="ws_test", settings=settings, plan_map={"12": "auth-rewrite"})


def _laravel_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((DATA / "laravel_agent_sessions.json").read_text())
    return rows


def _export_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": "sess_1",
        "status": "active",
        "started_at": T0,
        "work_log": [
            {"id": "e1", "action": "read", "details": {"path": "a.py"}, "timestamp": "2026-01-05T10:01:00+00:00"},
            {"id": "e2", "message": "cp", "type": "checkpoint", "data": {}, "timestamp": "2026-01-05T10:02:00+00:00"},
        ],
        "artifacts": [],
    }
    row.update(changes)
    return row


# Laravel rows -----------------------------------------------------------------------------------------------


def test_laravel_row_keeps_integer_ids_in_legacy_and_maps_the_plan(target: Target) -> None:
    doc = from_laravel(_laravel_rows()[0], target)

    assert doc["legacy"] == {"id": 101, "workspace_id": 7, "agent_api_key_id": 3, "agent_plan_id": 12}
    assert doc["plan"] == "auth-rewrite"
    assert doc["workspace_id"] == "ws_test"
    assert doc["agent_api_key_id"] is None
    assert doc["started_at"] == datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert doc["ended_at"] == datetime(2025, 3, 1, 11, 5, tzinfo=UTC)
    assert doc["duration_minutes"] == 125


def test_laravel_plan_id_without_a_mapping_stays_only_in_legacy(target: Target) -> None:
    doc = from_laravel(_laravel_rows()[3], target)

    assert doc["plan"] is None
    assert doc["legacy"]["agent_plan_id"] == 99


def test_laravel_json_columns_as_strings_and_php_empty_arrays(target: Target) -> None:
    first, second, third, _ = (from_laravel(row, target) for row in _laravel_rows())

    assert first["context_summary"] == {
        "goal": "Rewrite the auth middleware",
        "files": ["app/Http/Middleware/Auth.php"],
    }
    checkpoint = first["work_log"][1]
    assert checkpoint["type"] == "checkpoint"
    assert checkpoint["data"] == {}  # PHP's [] for an empty object
    assert first["work_log"][4]["details"] == {}
    assert first["artifacts"][1]["metadata"] == {}
    assert second["context_summary"] == {}
    assert second["handoff_notes"] == {
        "summary": "Invoice export half done",
        "next_steps": ["CSV writer", "tests"],
        "blockers": [],
        "context_for_next": {},  # PHP's [] for an empty object
    }
    assert third["context_summary"] is None
    assert third["work_log"] == []
    assert third["artifacts"] == []


def test_entries_without_ids_get_positional_ids_so_the_same_row_maps_the_same(target: Target) -> None:
    row = _laravel_rows()[0]

    doc = from_laravel(row, target)

    assert [entry["id"] for entry in doc["work_log"]] == [f"legacy-{i}" for i in range(6)]
    assert [entry["id"] for entry in doc["artifacts"]] == ["legacy-artifact-0", "legacy-artifact-1"]
    assert from_laravel(json.loads(json.dumps(row)), target) == doc


def test_entry_without_type_is_an_action_when_it_has_an_action_else_info(target: Target) -> None:
    doc = from_laravel(_laravel_rows()[1], target)
    first = from_laravel(_laravel_rows()[0], target)

    assert doc["work_log"] == [
        {
            "id": "legacy-0",
            "message": "Started on the invoice export",
            "type": "info",
            "data": {},
            "timestamp": datetime(2025, 3, 2, 14, 0, 30, tzinfo=UTC),
        }
    ]
    assert set(first["work_log"][0]) == {"id", "action", "details", "timestamp"}


def test_counters_checkpoint_and_payload_follow_the_append_rules(target: Target) -> None:
    doc = from_laravel(_laravel_rows()[0], target)

    assert {name: doc[name] for name in ("action_count", "checkpoint_count", "error_count")} == views.sum_increments(
        doc["work_log"]
    )
    assert (doc["action_count"], doc["checkpoint_count"], doc["error_count"], doc["artifact_count"]) == (6, 2, 1, 2)
    assert doc["last_checkpoint"] == doc["work_log"][5]
    assert doc["payload_bytes"] == sum(stored_size(entry) for array in KINDS for entry in doc[array])


def test_ended_session_without_an_end_time_ends_at_its_last_update(target: Target) -> None:
    doc = from_laravel(_laravel_rows()[3], target)

    assert doc["ended_at"] == datetime(2025, 3, 4, 7, 42, tzinfo=UTC)
    assert doc["duration_minutes"] == 42


def test_open_session_has_no_end_and_a_paused_one_a_pause_time(target: Target) -> None:
    paused = from_laravel(_laravel_rows()[1], target)
    active = from_laravel({**_laravel_rows()[2], "ended_at": "2025-03-03 09:00:00"}, target)

    assert paused["paused_at"] == datetime(2025, 3, 2, 14, 46, tzinfo=UTC)
    assert paused["ended_at"] is None
    assert paused["duration_minutes"] is None
    assert active["ended_at"] is None
    assert active["paused_at"] is None


def test_a_laravel_replay_keeps_its_origin_from_the_context_summary(target: Target) -> None:
    replay = {**_laravel_rows()[0], "context_summary": '{"replayed_from": "sess_20250302_billing", "goal": "g"}'}

    assert from_laravel(replay, target)["replayed_from"] == "sess_20250302_billing"
    assert from_laravel(_laravel_rows()[0], target)["replayed_from"] is None


def test_missing_times_are_derived_from_the_start_and_the_entries(target: Target) -> None:
    doc = from_laravel(_laravel_rows()[2], target)
    row = {**_laravel_rows()[3], "last_active_at": None, "created_at": None}

    assert doc["last_active_at"] == doc["created_at"] == doc["updated_at"] == datetime(2025, 3, 3, 8, tzinfo=UTC)
    assert from_laravel(row, target)["last_active_at"] == datetime(2025, 3, 4, 7, 12, tzinfo=UTC)


def test_a_supplied_last_activity_older_than_an_entry_is_raised_to_the_newest_entry(target: Target) -> None:
    doc = from_export(_export_row(last_active_at="2026-01-05T10:00:30+00:00"), target)
    later = from_export(_export_row(last_active_at="2026-01-05T11:00:00+00:00"), target)

    assert doc["last_active_at"] == datetime(2026, 1, 5, 10, 2, tzinfo=UTC)
    assert later["last_active_at"] == datetime(2026, 1, 5, 11, 0, tzinfo=UTC)


def test_a_supplied_last_activity_before_the_start_is_raised_to_the_start(target: Target) -> None:
    doc = from_export(_export_row(work_log=[], last_active_at="2026-01-01T00:00:00+00:00"), target)

    assert doc["last_active_at"] == doc["started_at"]


# Export lines -----------------------------------------------------------------------------------------------


def test_export_line_fields_come_back_and_derived_ones_are_recomputed(target: Target) -> None:
    row = _export_row(
        external_id="thread-9",
        agent_api_key_id="key_abc",
        plan="p",
        agent_type="claude",
        context_summary={"k": [1, 2]},
        action_count=99,
        duration="1h 0m",
        duration_minutes=60,
        workspace_id="ws_elsewhere",
    )

    doc = from_export(row, target)

    assert doc["workspace_id"] == "ws_test"
    assert (doc["external_id"], doc["agent_api_key_id"], doc["plan"]) == ("thread-9", "key_abc", "p")
    assert doc["action_count"] == 2
    assert doc["duration_minutes"] is None
    assert doc["last_active_at"] == datetime(2026, 1, 5, 10, 2, tzinfo=UTC)
    assert doc["legacy"] is None


def test_replayed_from_comes_back_and_a_null_one_stays_null(target: Target) -> None:
    replay_context = {"replayed_from": "sess_0"}

    assert from_export(_export_row(replayed_from="sess_0"), target)["replayed_from"] == "sess_0"
    assert from_export(_export_row(replayed_from=None, context_summary=replay_context), target)["replayed_from"] is None
    assert from_export(_export_row(), target)["replayed_from"] is None


@pytest.mark.parametrize(
    ("context_summary", "replayed_from"),
    [
        ({"replayed_from": "sess_0", "original_status": "paused", "inherited_context": None}, "sess_0"),
        ({"replayed_from": "sess 0"}, "sess 0"),
        ({"replayed_from": 7}, None),
        ({"replayed_from": {"id": "sess_0"}}, None),
        ({"replayed_from": "tab\there"}, None),
        ({"replayed_from": ""}, None),
        ({"goal": "g"}, None),
        (None, None),
    ],
)
def test_export_line_without_replayed_from_falls_back_to_the_replay_context(
    target: Target, context_summary: dict[str, Any] | None, replayed_from: str | None
) -> None:
    """Export lines written before ``replayed_from`` was exported: a replay's context names its origin."""
    doc = from_export(_export_row(context_summary=context_summary), target)

    assert doc["replayed_from"] == replayed_from
    assert doc["context_summary"] == context_summary


API_NOTES = {"summary": "h", "next_steps": ["a"], "blockers": [], "context_for_next": {}}


@pytest.mark.parametrize("shape", ["laravel", "jsonl"])
@pytest.mark.parametrize(
    ("notes", "stored"),
    [
        ({"summary": "h", "next_steps": ["a"]}, API_NOTES),
        ({"summary": "h", "next_steps": ["a"], "blockers": [], "context_for_next": []}, API_NOTES),
        (
            {"context_for_next": {"branch": "x"}, "blockers": ["ci red"], "summary": "h", "next_steps": []},
            {"summary": "h", "next_steps": [], "blockers": ["ci red"], "context_for_next": {"branch": "x"}},
        ),
        ({"summary": "only"}, {"summary": "only", "next_steps": [], "blockers": [], "context_for_next": {}}),
        ({}, None),
        ([], None),
        (None, None),
    ],
)
def test_handoff_notes_are_stored_in_the_shape_the_handoff_route_stores(
    target: Target, shape: str, notes: Any, stored: dict[str, Any] | None
) -> None:
    """What ``POST .../handoff`` stores: all four keys, ``[]``/``{}`` where the body left them out."""
    if shape == "laravel":
        doc = from_laravel(_laravel_rows()[1] | {"handoff_notes": json.dumps(notes)}, target)
    else:
        doc = from_export(_export_row(status="paused", handoff_notes=notes), target)

    assert doc["handoff_notes"] == stored
    if stored is not None:
        assert list(doc["handoff_notes"]) == ["summary", "next_steps", "blockers", "context_for_next"]


@pytest.mark.parametrize(
    ("notes", "message"),
    [
        ({"summary": "h", "next_steps": "a"}, "handoff_notes.next_steps: Input should be a valid list"),
        ({"summary": "h", "next_steps": ["a", 2]}, "handoff_notes.next_steps.1: Input should be a valid string"),
        ({"summary": "h", "blockers": {"0": "x"}}, "handoff_notes.blockers: Input should be a valid list"),
        ({"summary": "h", "blockers": None}, "handoff_notes.blockers: Input should be a valid list"),
        ({"summary": "h", "context_for_next": "x"}, "handoff_notes.context_for_next: Input should be a valid dict"),
        ({"summary": "h", "context_for_next": {"$set": 1}}, "handoff_notes: key 'context_for_next.$set' may not"),
        ({"summary": "h", "context_for_next": {"a": {"$set": 1}}}, "key 'context_for_next.a.$set' may not"),
        ({"next_steps": ["a"]}, "handoff_notes.summary: Field required"),
        ({"summary": ""}, "handoff_notes.summary: String should have at least 1 character"),
        ({"summary": 5}, "handoff_notes.summary: Input should be a valid string"),
        ({"summary": "h", "owner": "me"}, "handoff_notes.owner: Extra inputs are not permitted"),
        ("notes", "handoff_notes must be an object, not a string"),
    ],
)
def test_handoff_notes_the_handoff_route_would_refuse_reject_the_row(target: Target, notes: Any, message: str) -> None:
    for make in (
        lambda: from_laravel(_laravel_rows()[1] | {"handoff_notes": json.dumps(notes)}, target),
        lambda: from_export(_export_row(status="paused", handoff_notes=notes), target),
    ):
        with pytest.raises(RowError) as caught:
            make()
        assert message in str(caught.value)
        if message.startswith("handoff_notes."):  # refused by the handoff body: the message shows its shape
            assert str(caught.value).endswith("(handoff notes are {summary, next_steps, blockers, context_for_next})")


def test_timestamps_are_utc_at_millisecond_precision(target: Target) -> None:
    doc = from_export(_export_row(started_at="2026-01-05T12:00:00.123456+02:00"), target)

    assert doc["started_at"] == datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)


# Rejects ----------------------------------------------------------------------------------------------------


def _big(size: int) -> dict[str, str]:
    return {"blob": "x" * size}


BAD_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"session_id": None}, "missing required field 'session_id'"),
    ({"status": None}, "missing required field 'status'"),
    ({"started_at": ""}, "missing required field 'started_at'"),
    ({"status": "archived"}, "unknown status 'archived'"),
    ({"started_at": "yesterday"}, "started_at: 'yesterday' is not an ISO 8601 timestamp"),
    ({"ended_at": "2026-13-01 00:00:00"}, "ended_at: '2026-13-01 00:00:00' is not"),
    ({"work_log": [{"message": "m", "type": "note"}]}, "work_log[0].type 'note' is not one of"),
    ({"work_log": [{"message": "m", "timestamp": 12}]}, "work_log[0].timestamp: expected an ISO 8601"),
    ({"work_log": [{"type": "info"}]}, "work_log[0].message must be a non-empty string (missing)"),
    ({"work_log": [{"action": "a" * 10_001}]}, "work_log[0]: action is longer than 10000 characters"),
    ({"work_log": [{"action": "a", "details": _big(70_000)}]}, "work_log[0]: details is 70011 bytes serialized"),
    ({"work_log": [{"message": "m", "data": {"$set": 1}}]}, "work_log[0].data: key '$set' may not start"),
    ({"work_log": [{"message": "m", "data": [1]}]}, "work_log[0].data must be an object, not an array"),
    ({"work_log": [{"id": "x y", "message": "m"}]}, "work_log[0].id 'x y' must be 1-64 characters"),
    ({"work_log": [{"id": "a", "message": "m"}, {"id": "a", "message": "n"}]}, "work_log[1].id 'a' is used"),
    ({"work_log": "[]"}, "work_log must be an array, not a string"),
    ({"artifacts": [{"path": "a", "action": "renamed"}]}, "artifacts[0].action 'renamed' is not one of"),
    ({"artifacts": [{"path": "p" * 1025}]}, "artifacts[0]: path is longer than 1024 characters"),
    ({"artifacts": [{"metadata": _big(70_000), "path": "a"}]}, "artifacts[0]: metadata is 70011 bytes"),
    ({"context_summary": "text"}, "context_summary must be an object, not a string"),
    ({"external_id": "has\ttab"}, "external_id 'has\\ttab' must be 1-255 printable ASCII"),
    ({"replayed_from": 12}, "replayed_from must be a string, not int"),
    ({"replayed_from": ""}, "replayed_from '' must be 1-255 printable ASCII"),
    ({"replayed_from": "x" * 256}, "must be 1-255 printable ASCII"),
    ({"work_log": [{"message": "m", "type": {"k": 1}}]}, "work_log[0].type {'k': 1} is not one of"),
    ({"work_log": [{"message": "m", "type": ["info"]}]}, "work_log[0].type ['info'] is not one of"),
    ({"artifacts": [{"path": "a", "action": ["created"]}]}, "artifacts[0].action ['created'] is not one of"),
    ({"work_log": [{"id": "x" * 65, "message": "m"}]}, "work_log[0].id '" + "x" * 65 + "' must be 1-64"),
    ({"artifacts": [{"id": "a", "path": "p"}, {"id": "a", "path": "q"}]}, "artifacts[1].id 'a' is used"),
    ({"work_log": [{"action": "", "timestamp": T0}]}, "work_log[0].action must be a non-empty string"),
    ({"work_log": [{"message": "m", "data": {"a": {"b": {"$inc": 1}}}}]}, "key 'a.b.$inc' may not start"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_ROWS)
def test_bad_row_is_rejected_with_a_message_saying_what_to_fix(
    target: Target, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RowError) as caught:
        from_export(_export_row(**changes), target)

    assert message in str(caught.value)


@pytest.mark.parametrize(("changes", "message"), BAD_ROWS)
def test_bad_row_is_rejected_the_same_when_its_line_lets_checks_be_skipped(
    target: Target, changes: dict[str, Any], message: str
) -> None:
    row = _export_row(**changes)
    with pytest.raises(RowError) as caught:
        to_bson(row, target, source=json.dumps(row).encode())

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("line_key", "message"),
    [("\\u0024set", "key '$set' may not start"), ("a\\u0000b", "key 'a\\x00b' may not start")],
)
def test_an_escaped_operator_or_nul_in_the_line_is_refused(target: Target, line_key: str, message: str) -> None:
    """The line is searched for '$' and backslashes; a key spelled with a JSON escape is still checked."""
    line = (
        '{"session_id":"s","status":"active","started_at":"2026-01-05T10:00:00+00:00","work_log":'
        '[{"id":"e1","message":"m","type":"info","data":{"'
        + line_key
        + '":1},"timestamp":"2026-01-05T10:01:00+00:00"}]}'
    ).encode()
    with pytest.raises(RowError) as caught:
        to_bson(json.loads(line), target, source=line)

    assert message in str(caught.value)


#: Entries the one-pass check takes as they are, and entries it must leave to the detailed one (normalized or
#: refused there): both must store exactly what the detailed path alone would.
ENTRY_VARIANTS: list[dict[str, Any]] = [
    {"id": "e1", "action": "edit", "details": {"path": "a.py", "n": 3}, "timestamp": "2026-01-05T10:01:00+00:00"},
    {"id": "e2", "action": "edit", "details": None, "timestamp": "2026-01-05T10:01:00.123000+00:00"},
    {"id": "e3", "action": "edit", "type": "action", "timestamp": "2026-01-05T10:01:00+00:00"},
    {"id": "e4", "message": "m", "type": "decision", "data": {}, "timestamp": "2026-01-05T10:01:00+00:00"},
    {"id": "e5", "message": "m", "type": "info", "data": None, "timestamp": "2026-01-05T10:01:00+00:00"},
    {"id": "e6", "message": "m", "type": "info", "data": {"deep": {"x": [1, 2]}}, "timestamp": T0},
    {"id": "e7", "message": "m", "timestamp": "2026-01-05T10:01:00+00:00"},  # no type: info
    {"id": "e8", "message": "m", "type": "info", "timestamp": "2026-01-05T12:01:00+02:00"},  # not UTC
    {"id": "e9", "message": "m", "type": "info", "timestamp": "2026-01-05T10:01:00.123456+00:00"},  # microseconds
    {"id": "e10", "message": "m", "type": "info", "timestamp": "2026-01-05 10:01:00"},  # naive, space
    {"id": "e11", "message": "m", "type": "info"},  # no timestamp: the session's start
    {"id": 12, "message": "m", "type": "info", "timestamp": T0},  # an integer id
    {"message": "m", "type": "info", "timestamp": T0},  # no id: from the position
    {"id": "e14", "action": "edit", "details": [], "timestamp": T0},  # PHP's empty array
    {"id": "e15", "action": "edit", "message": "also", "type": "info", "timestamp": T0},  # typed after all
    {"id": "e16", "message": "x" * 10_000, "type": "info", "timestamp": T0},  # at the limit
]
ARTIFACT_VARIANTS: list[dict[str, Any]] = [
    {"id": "a1", "path": "a.py", "action": "created", "metadata": {"bytes": 3}, "timestamp": T0},
    {"id": "a2", "path": "a.py", "metadata": None, "timestamp": T0},  # no action: modified
    {"id": "a3", "path": "a.py", "action": "deleted", "metadata": {"n": {"m": 1}}, "timestamp": T0},
    {"id": "a4", "path": "a.py", "action": "created", "timestamp": "2026-01-05T11:00:00+01:00"},
    {"path": "b.py", "action": "created", "timestamp": T0},
    {"id": "a6", "path": "p" * 1024, "action": "created", "timestamp": T0},
]


@pytest.mark.parametrize("with_source", [True, False])
def test_the_one_pass_check_stores_what_the_detailed_one_does(target: Target, with_source: bool) -> None:
    row = _export_row(work_log=ENTRY_VARIANTS, artifacts=ARTIFACT_VARIANTS)
    facts = row_facts(json.dumps(row).encode() if with_source else None, target.settings)
    started = datetime(2026, 1, 5, 10, tzinfo=UTC)

    seen: set[str] = set()
    one_by_one = [
        work_log_entry(raw, i, default_time=started, seen=seen, row=facts) for i, raw in enumerate(ENTRY_VARIANTS)
    ]
    seen = set()
    artifacts = [
        artifact_entry(raw, i, default_time=started, seen=seen, row=facts) for i, raw in enumerate(ARTIFACT_VARIANTS)
    ]

    assert work_log_entries(ENTRY_VARIANTS, default_time=started, row=facts) == one_by_one
    assert artifact_entries(ARTIFACT_VARIANTS, default_time=started, row=facts) == artifacts
    assert [entry["timestamp"] for entry in one_by_one[7:11]] == [
        datetime(2026, 1, 5, 10, 1, tzinfo=UTC),
        datetime(2026, 1, 5, 10, 1, 0, 123000, tzinfo=UTC),
        datetime(2026, 1, 5, 10, 1, tzinfo=UTC),
        started,
    ]


def test_laravel_json_column_that_is_not_json_is_rejected(target: Target) -> None:
    with pytest.raises(RowError, match="context_summary is not valid JSON"):
        from_laravel({**_laravel_rows()[0], "context_summary": "{goal:"}, target)


def test_laravel_zero_date_is_a_bad_timestamp(target: Target) -> None:
    with pytest.raises(RowError, match="updated_at: '0000-00-00 00:00:00' is not"):
        from_laravel({**_laravel_rows()[0], "updated_at": "0000-00-00 00:00:00"}, target)


def test_log_over_16_mib_is_paged_into_documents_under_the_limit(target: Target) -> None:
    row = _export_row(work_log=[{"id": f"e{i}", "message": "m", "data": _big(60_000)} for i in range(290)])

    encoded = to_bson(row, target)

    documents = [bson.decode(encoded.bson), *(bson.decode(page) for page in encoded.pages)]
    assert all(len(bson.encode(document)) < 16 * 1024 * 1024 for document in documents)
    assert [entry["id"] for document in documents[1:] for entry in document["entries"]] + [
        entry["id"] for entry in documents[0]["work_log"]
    ] == [f"e{i}" for i in range(290)]


def test_session_over_the_session_byte_cap_is_rejected() -> None:
    settings = Settings(mongodb_url="mongodb://unused", data_dir=Path("/nonexistent"), max_session_bytes=100_000)
    row = _export_row(work_log=[{"id": f"e{i}", "message": "m", "data": _big(30_000)} for i in range(4)])

    with pytest.raises(RowError, match=r"the session stores 120,[\d,]+ bytes, over the cap of 100,000"):
        to_bson(row, Target(workspace_id="ws_test", settings=settings))
    assert to_bson(row, Target(workspace_id="ws_test", settings=settings.model_copy(update={"max_session_bytes": 0})))


def test_session_fields_over_16_mib_are_rejected() -> None:
    settings = Settings(mongodb_url="mongodb://unused", data_dir=Path("/nonexistent"), max_payload_bytes=32 * 1024**2)
    row = _export_row(context_summary=_big(17 * 1024 * 1024))

    with pytest.raises(RowError, match=r"the session is [\d,]+ bytes as a BSON document, over MongoDB's limit"):
        to_bson(row, Target(workspace_id="ws_test", settings=settings))


@pytest.mark.parametrize("with_source", [True, False], ids=["line known", "row only"])
def test_number_too_large_for_bson_is_rejected_saying_where(target: Target, with_source: bool) -> None:
    row = _export_row(work_log=[{"message": "m", "data": {"n": 2**70}}])
    source = json.dumps(row).encode() if with_source else None

    with pytest.raises(RowError, match=r"work_log\[0\]\.data: integer at 'n' does not fit in 64 bits"):
        to_bson(row, target, source=source)


@pytest.mark.parametrize("entries", [0, 1, 15, 16, 17, 99, 250])
def test_encoding_is_the_paged_layout_of_the_document(entries: int) -> None:
    settings = Settings(mongodb_url="mongodb://unused", data_dir=Path("/nonexistent"), page_entries=16)
    target = Target(workspace_id="ws_test", settings=settings)
    work_log = [{"message": f"m{i}", "data": {"i": "x" * (i % 7)}} for i in range(entries)]
    artifacts = [{"path": f"p{i}.py"} for i in range(entries // 3)]
    row = _export_row(work_log=work_log, artifacts=artifacts)
    line = json.dumps(row).encode()

    encoded = to_bson(row, target, source=line)
    doc = from_export(row, target, source=line)
    session, pages = paged_layout(doc, page_bounds(settings), target.sealed_at)
    noted = notables.attach(session, pages) if pages else []  # their notable entries, counted on the session

    # The same documents (the session's arrays are written after its other fields: their one encoding is reused).
    assert encoded.session_id == "sess_1"
    assert bson.decode(encoded.bson, CODEC) == session
    assert encoded.pages == tuple(bson.encode(page) for page in pages)
    assert encoded.notables == tuple(bson.encode(notable) for notable in noted)
    assert session["_id"] == "ws_test/sess_1"
    assert len(pages) == session["pages_version"]
    assert sum(len(page["entries"]) for page in pages) == sum(session["sealed_upto"].values())
    assert session["payload_bytes"] == doc["payload_bytes"]
    assert doc["payload_bytes"] == sum(stored_size(entry) for array in KINDS for entry in doc[array])
    for laravel_row in _laravel_rows():
        laravel, _ = paged_layout(from_laravel(laravel_row, target), page_bounds(settings), target.sealed_at)
        assert bson.decode(to_bson(laravel_row, target, shape="laravel").bson, CODEC) == laravel


def test_small_line_cannot_hide_an_oversized_payload() -> None:
    """The fast path skips serializing payloads of lines under max_payload_bytes / 5: the growth stays under 5x."""
    for source in ['{"a":1e15}', '{"a":[5E+15,1e-5]}', '{"a":"\\u00e9\\/"}', '{"a" : 1 , "a" : 2}', '{"a":-0}']:
        assert serialized_size(json.loads(source)) <= len(source) * PAYLOAD_GROWTH


# Readers ----------------------------------------------------------------------------------------------------


def _records(path: Path) -> list[tuple[int, str | None, str | None]]:
    """(line, session_id, error) of each record, JSON Lines decoded as the import does."""
    found = []
    for record in FileReader(path):
        row, error = parse_line(record.raw) if record.raw is not None else (record.row, record.error)
        found.append((record.line, row.get("session_id") if row else None, error))
    return found


def test_json_lines_keep_physical_line_numbers_and_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"session_id":"a"}\n\n  \n{oops\n[1]\n{"session_id":"b"}')

    records = _records(path)

    assert [(line, sid) for line, sid, _ in records] == [(1, "a"), (4, None), (5, None), (6, "b")]
    assert records[1][2] is not None
    assert records[1][2].startswith("invalid JSON")
    assert records[2][2] == "a line must be a JSON object, not list"


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ('[{"session_id":"a"},{"session_id":"b"}]', [1, 1]),
        ('[\n{"session_id":"a"},\n{"session_id":"b"}\n]\n', [2, 3]),
        (json.dumps([{"session_id": "a", "x": [1, 2]}, {"session_id": "b"}], indent=2), [2, 9]),
    ],
    ids=["one line", "a row a line", "pretty"],
)
def test_json_array_rows_carry_the_line_they_start_on(tmp_path: Path, text: str, lines: list[int]) -> None:
    path = tmp_path / "in.json"
    path.write_text(text)

    assert [(line, sid) for line, sid, _ in _records(path)] == list(zip(lines, ["a", "b"], strict=True))


def test_broken_json_array_rejects_the_rest_and_keeps_what_came_before(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[\n{"session_id":"a"},\n{"session_id": nope},\n{"session_id":"c"}\n]')

    records = list(FileReader(path))

    assert [r.row for r in records[:1]] == [{"session_id": "a"}]
    assert len(records) == 2
    assert records[1].line == 3
    assert records[1].error is not None
    assert "the rest of the file was not read" in records[1].error


def test_truncated_json_array_is_one_reject_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[{"session_id":"a"},\n{"session_id":"b"')

    records = list(FileReader(path))

    assert records[0].row == {"session_id": "a"}
    assert records[1].error is not None
    assert records[1].line == 2


def test_json_array_row_that_is_not_an_object_is_a_reject(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[{"session_id":"a"}, 5]')

    assert _records(path)[1] == (1, None, "row 2 of the array is not a JSON object but int")


def test_row_shape_tells_laravel_rows_from_export_lines() -> None:
    assert all(looks_like_laravel(row) for row in _laravel_rows())
    assert not looks_like_laravel(_export_row(workspace_id="ws_1", action_count=2))


def test_workers_only_for_big_inputs_and_at_most_one_a_core() -> None:
    cores = len(os.sched_getaffinity(0))

    assert default_workers(1024) == 0
    assert default_workers(10**10) == (0 if cores < 2 else min(4, cores))
