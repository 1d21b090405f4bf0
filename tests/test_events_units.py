"""The pure parts of events: what a change on ``sessions`` means, positions as ids, and a slow consumer's queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from handoff.events.hub import Delivery, Selection, Subscriber, deliveries
from handoff.events.mapping import Event, Position, events_of, needs_body, with_body

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
