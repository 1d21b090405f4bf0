"""The pure parts of events: what a change on ``sessions`` means, positions as ids, and a slow consumer's queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bson
import pydantic_core
import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions

from handoff.events.controller import _json
from handoff.events.hub import Delivery, Selection, Subscriber, deliveries
from handoff.events.mapping import Event, Position, events_of, needs_body, with_body
from handoff.sessions import views

NOW = datetime(2026, 12, 7, tzinfo=UTC)
KEY = "ws_0123456789abcdef/ses_1"


def update(fields: dict[str, Any], resume: str = "82aa") -> dict[str, Any]:
    return {
        "_id": {"_data": resume},
        "operationType": "update",
        "documentKey": {"_id": KEY},
        "wallTime": NOW,
        "updateDescription": {"updatedFields": fields, "removedFields": [], "truncatedArrays": []},
    }


def types(change: dict[str, Any]) -> list[str]:
    return [event.type for event in events_of(change, NOW)]


def test_appends_are_in_log_order_whatever_the_key_order() -> None:
    change = update(
        {
            "work_log.11": {"id": "b", "message": "b", "type": "info", "timestamp": NOW},
            "work_log.2": {"id": "a", "message": "a", "type": "info", "timestamp": NOW},
        }
    )
    assert [e.data["entry"]["id"] for e in events_of(change, NOW)] == ["a", "b"]
    first = update({"artifacts": [{"id": "x", "path": "p", "action": "created", "metadata": {}, "timestamp": NOW}]})
    assert types(first) == ["artifact.recorded"]


AT = datetime(2026, 12, 7, 9, 30, 15, 123000, tzinfo=UTC)
DATA = {"n": 2**40, "ratio": 0.5, "whole": 2.0, "none": None, "ok": True, "words": ["é", "日本"], "deep": {"a": [1]}}
#: Stored entries of every shape an append writes (with a blob, without, empty and missing free-form fields).
APPENDED = {
    "typed": ("work_log", {"id": "t1", "message": "ran", "type": "checkpoint", "timestamp": AT}),
    "typed-data": ("work_log", {"id": "t2", "message": "m", "type": "decision", "data": DATA, "timestamp": AT}),
    "typed-null-data": ("work_log", {"id": "t3", "message": "m", "type": "error", "data": None, "timestamp": AT}),
    "typed-blob": ("work_log", {"id": "t4", "message": "m", "type": "info", "timestamp": AT, "blob_id": "blb_1"}),
    "action": ("work_log", {"id": "a1", "action": "pytest", "details": DATA, "timestamp": AT}),
    "action-null": ("work_log", {"id": "a2", "action": "ls", "details": None, "timestamp": AT, "blob_id": None}),
    "action-blob": ("work_log", {"id": "a3", "action": "cat", "details": {}, "timestamp": AT, "blob_id": "blb_2"}),
    "artifact": ("artifacts", {"id": "f1", "path": "src/é.py", "action": "created", "metadata": DATA, "timestamp": AT}),
    "artifact-null": ("artifacts", {"id": "f2", "path": "a", "action": "deleted", "metadata": None, "timestamp": AT}),
    "artifact-blob": (
        "artifacts",
        {"id": "f3", "path": "b", "action": "modified", "metadata": {}, "timestamp": AT, "blob_id": "blb_3"},
    ),
}


def _as_the_models_give_it(kind: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry through the API models, as the entry routes answer it (and as the events made it before)."""
    if kind == "work_log":
        return views.work_log_entry(entry).model_dump(mode="json")
    return views.artifacts([entry])[0].model_dump(mode="json")


@pytest.mark.parametrize("tz_aware", [True, False], ids=["aware", "naive"])
@pytest.mark.parametrize("name", list(APPENDED))
def test_an_appended_entry_is_sent_as_the_very_bytes_of_its_model(name: str, tz_aware: bool) -> None:
    kind, written = APPENDED[name]
    # As a change stream hands it over: decoded from BSON (Int64, the datetime of the client's tz_aware).
    stored = bson.decode(bson.encode(written), CodecOptions(tz_aware=tz_aware))

    [event] = events_of(update({f"{kind}.7": stored}), NOW)

    sent = event.data["entry" if kind == "work_log" else "artifact"]
    expected = _as_the_models_give_it(kind, stored)
    assert _json(sent) == _json(expected)  # the SSE data line
    assert pydantic_core.to_json(sent) == pydantic_core.to_json(expected)  # ``handoff tail --json``
    assert ("blob_id" in sent) == (written.get("blob_id") is not None)


def test_seals_counters_and_unmigrated_sessions_mean_nothing() -> None:
    assert types(update({"pages_version": 2, "work_log": []})) == []
    assert types(update({"last_active_at": NOW, "action_count": 3})) == []
    legacy = {**update({"work_log.0": {"id": "a", "action": "x"}}), "documentKey": {"_id": ObjectId()}}
    assert types(legacy) == []
    migrated = {"_id": {"_data": "82"}, "operationType": "insert", "documentKey": {"_id": KEY}, "wallTime": NOW}
    assert types({**migrated, "fullDocument": {"migrated": True}}) == []


def test_removals_and_session_changes() -> None:
    removal = update({"last_removal": {"kind": "artifacts", "ids": None, "cleared": True}, "artifacts": []})
    assert [(e.type, e.data["cleared"]) for e in events_of(removal, NOW)] == [("artifact.removed", True)]
    handoff = update({"status": "paused", "handoff_notes": {"summary": "s"}})
    assert types(handoff) == ["session.updated", "handoff.waiting"]


def test_a_handoff_waiting_again_after_a_claim_lets_go_takes_its_notes_from_the_body() -> None:
    released = {
        "claim_id": "clm_1",
        "handoff_session_id": "ses_1",
        "session_id": "ses_2",
        "agent_type": None,
        "state": "released",
        "claimed_at": NOW,
        "lease_expires_at": NOW,
        "ended_at": NOW,
        "reason": "claim clm_1 released: oom",
    }
    change = {
        **update({"last_claim": released}),
        "updateDescription": {"updatedFields": {"last_claim": released}, "removedFields": ["claim"]},
    }
    notes = {"summary": "over to you", "next_steps": ["go on"]}

    released_event, waiting = events_of(change, NOW)
    paused = events_of(update({"status": "paused", "handoff_notes": notes}), NOW)[1]

    assert (released_event.type, waiting.type) == ("handoff.released", "handoff.waiting")
    assert (needs_body(released_event), needs_body(waiting), needs_body(paused)) == (False, True, False)
    assert with_body(waiting, {"handoff_notes": notes}).data["handoff_notes"] == paused.data["handoff_notes"] == notes
    assert with_body(waiting, None).data["handoff_notes"] is None  # the handoff was deleted since


def test_positions_of_a_change_with_several_events() -> None:
    change = update(
        {
            "work_log.0": {"id": "a", "message": "a", "type": "info", "timestamp": NOW},
            "work_log.1": {"id": "b", "message": "b", "type": "info", "timestamp": NOW},
        },
        "82bb",
    )
    found = deliveries(change, {"_data": "82aa"})
    assert [d.position.encode() for d in found] == ["82aa.1", "82bb"]
    assert Position.decode("82aa.1") == Position("82aa", 1)
    assert Position.decode("not hex") is None
    assert Position.decode("82aa.x") is None


async def test_a_full_queue_ends_the_stream_with_a_reason() -> None:
    subscriber = Subscriber(Selection("ws_0123456789abcdef"), size=2)
    event = Event("session.deleted", "ws_0123456789abcdef", "ses_1", {})
    for _ in range(3):
        subscriber.offer(Delivery(event, Position("82")))
    assert subscriber.reason is not None
    assert "behind" in subscriber.reason
    assert subscriber.queue.get_nowait() is None  # what it had not read is dropped: it resumes from what it had
    other = Event("session.deleted", "ws_fedcba9876543210", "ses_1", {})
    quiet = Subscriber(Selection("ws_0123456789abcdef"), size=2)
    quiet.offer(Delivery(other, Position("82")))
    assert quiet.queue.empty()  # another workspace's event never enters the queue
