"""From a change event on ``sessions`` to the API's events: pure, so every rule is tested without MongoDB.

What a change means is fixed by the paged layout (see the README's paged-log section): an insert is a session
created (unless it is a migration re-keying one), a delete a session deleted, an update with ``last_removal``
entries removed, one with ``pages_version`` alone a seal (nothing new), one with ``work_log.<i>`` /
``artifacts.<i>`` keys entries appended, one of the session's own fields a session updated, and a handoff's
``claim`` / ``last_claim`` a claim taking or letting go of it. Only the
``updateDescription`` is read: the entries appended are its values, so no lookup of the whole document is needed.

A change may mean several events (a batch append is one update); each gets a :class:`Position` in the stream
that resumes exactly after it (see :class:`Position`).

An update's description does not hold the whole session, so the events of :data:`WITH_SESSION` are made without
their ``session``, and a ``handoff.waiting`` made by a claim letting go without the handoff's ``handoff_notes``
(the update that lets go does not touch them): :func:`needs_body` says which, the hub reads the body once per change
and :func:`with_body` fills it in (see ``bodies.Bodies``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, get_args

from handoff.claims.schemas import ClaimRead
from handoff.errors import Invalid
from handoff.metrics import EventType
from handoff.sessions import context_answers, views

EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))

#: The session fields whose change is a ``session.updated`` (counters and timestamps move with every write).
SESSION_FIELDS = ("status", "context_summary", "handoff_notes", "final_summary", "ended_at")
#: Per log kind: the event of an entry appended and of entries removed, and the key of the entry in ``data``.
KINDS: dict[str, tuple[EventType, EventType, str]] = {
    "work_log": ("work_log.appended", "work_log.removed", "entry"),
    "artifacts": ("artifact.recorded", "artifact.removed", "artifact"),
}
#: The events whose ``data`` also carries ``session``, the Session body, which the hub reads (this module is pure).
WITH_SESSION: frozenset[EventType] = frozenset({"session.updated"})
_ARRAY_FIELD = re.compile(r"^(work_log|artifacts)(?:\.(\d+))?$")
_TOKEN = re.compile(r"^[0-9A-Fa-f]{2,4096}$")


def parse_types(types: str | None) -> frozenset[str] | None:
    """A comma-separated list of event types (``?types=`` of the routes, ``--types`` of ``handoff tail``);
    ``None`` for all, an unknown name refused."""
    if types is None or not types.strip():
        return None
    wanted = frozenset(name.strip() for name in types.split(",") if name.strip())
    if unknown := sorted(wanted - EVENT_TYPES):
        raise Invalid(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
    return wanted


@dataclass(frozen=True, slots=True)
class Event:
    """One API event of one session of one workspace; ``data`` is the JSON body's content."""

    type: EventType
    workspace_id: str
    session_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream resumes: after the change whose resume token is ``token``, skipping its first ``skip`` events.

    The last (usually the only) event of a change is ``(its token, 0)``. An earlier one, the ``k``-th, is
    ``(the token of the change before it, k + 1)``: resuming after that token gives this change again, and the
    events already delivered are skipped. The SSE ``id:`` is the token's hex, with ``.<skip>`` when not 0.
    """

    token: str
    skip: int = 0

    def encode(self) -> str:
        return self.token if self.skip == 0 else f"{self.token}.{self.skip}"

    @classmethod
    def decode(cls, value: str) -> Position | None:
        """The position an id names, or ``None`` when it is not one this service wrote."""
        token, _, skip = value.strip().partition(".")
        if not _TOKEN.match(token) or (skip and not skip.isdigit()) or len(skip) > 6:
            return None
        return cls(token, int(skip or 0))

    def resume_token(self) -> dict[str, str]:
        return {"_data": self.token}


def needs_body(event: Event) -> bool:
    """Whether the event is made whole from the Session body (:func:`with_body`) before it is sent."""
    return event.type in WITH_SESSION or (event.type == "handoff.waiting" and "handoff_notes" not in event.data)


def with_body(event: Event, body: Mapping[str, Any] | None) -> Event:
    """An event of :func:`needs_body` completed from the Session body read for its change (``None``: deleted since)."""
    if event.type in WITH_SESSION:
        return replace(event, data={**event.data, "session": body})
    return replace(event, data={**event.data, "handoff_notes": body["handoff_notes"] if body else None})


def split_key(key: object) -> tuple[str, str] | None:
    """``(workspace_id, session_id)`` of a session ``_id``; ``None`` for the ObjectId of an unmigrated session."""
    if not isinstance(key, str) or "/" not in key:
        return None
    workspace_id, _, session_id = key.partition("/")
    return workspace_id, session_id


def workspace_filter(workspace_id: str) -> dict[str, Any]:
    """The ``$match`` of a change stream that sees only this workspace's sessions (updates and deletes alike)."""
    return {"documentKey._id": {"$regex": f"^{re.escape(workspace_id)}/"}}


def _at(change: Mapping[str, Any]) -> str:
    """When the change was made (its ``wallTime``, else the cluster time), as the API writes times."""
    wall = change.get("wallTime")
    if isinstance(wall, datetime):
        at = wall if wall.tzinfo else wall.replace(tzinfo=UTC)
    else:
        at = datetime.fromtimestamp(change["clusterTime"].time, UTC)
    return at.isoformat().replace("+00:00", "Z")


def events_of(change: Mapping[str, Any], now: datetime) -> list[Event]:
    """The API events one change stands for, in order; ``[]`` for a change no client needs to hear of."""
    found = split_key(change.get("documentKey", {}).get("_id"))
    if found is None:
        return []
    workspace_id, session_id = found
    base = {"session_id": session_id, "at": _at(change)}

    def event(type_: EventType, **data: Any) -> Event:
        return Event(type_, workspace_id, session_id, {"type": type_, **base, **data})

    operation = change.get("operationType")
    if operation == "insert":
        doc = change["fullDocument"]
        if doc.get("migrated"):
            return []
        return [event("session.created", session=views.session_read(doc, now).model_dump(mode="json"))]
    if operation == "delete":
        return [event("session.deleted")]
    if operation != "update":
        return []
    description = change.get("updateDescription", {})
    fields: dict[str, Any] = description.get("updatedFields", {})
    events: list[Event] = []
    if "last_removal" in fields:
        removal = fields["last_removal"]
        removed = KINDS[removal["kind"]][1]
        events.append(event(removed, ids=removal.get("ids"), cleared=bool(removal.get("cleared"))))
    elif "pages_version" not in fields:
        events += _appended(fields, event)
    changes = {name: fields.get(name) for name in SESSION_FIELDS if name in fields}
    changes |= {name: None for name in description.get("removedFields", ()) if name in SESSION_FIELDS}
    if changes:
        events.append(event("session.updated", changes=changes))
        if "handoff_notes" in changes and fields.get("status") == "paused":
            events.append(event("handoff.waiting", handoff_notes=changes["handoff_notes"]))
    return events + _claim_events(session_id, description, event)


def _claim_events(session_id: str, description: Mapping[str, Any], event: Any) -> list[Event]:
    """A claim's marks on its handoff's document: ``last_claim`` written is a claim that let go
    (``handoff.released``, and ``handoff.waiting`` when the same update cleared the mark rather than a new claim
    taking it), ``claim`` set is a claim that took it (``handoff.claimed``). ``claim.completed_at`` (a claim's
    replay completed) is no event of the handoff: the replay's own ``session.updated`` says it."""
    fields: Mapping[str, Any] = description.get("updatedFields", {})
    events: list[Event] = []
    ended = fields.get("last_claim")
    if isinstance(ended, Mapping):
        body = ClaimRead.model_validate(ended).model_dump(mode="json")
        events.append(event("handoff.released", claim=body, reason=ended.get("reason")))
        if "claim" in description.get("removedFields", ()) or ("claim" in fields and fields["claim"] is None):
            events.append(event("handoff.waiting", released_claim_id=body["claim_id"]))
    mark = fields.get("claim")
    if isinstance(mark, Mapping):
        body = ClaimRead(
            claim_id=mark["claim_id"],
            handoff_session_id=session_id,
            session_id=mark.get("session_id"),
            agent_type=mark.get("agent_type"),
            state="active",
            claimed_at=mark["claimed_at"],
            lease_expires_at=mark["lease_expires_at"],
            ended_at=None,
        ).model_dump(mode="json")
        events.append(event("handoff.claimed", claim=body))
    return events


def _appended(fields: Mapping[str, Any], event: Any) -> list[Event]:
    """The entries an update appended, in log order: ``work_log.<i>`` keys by ``i``, or a whole new array."""
    appended: list[tuple[str, int, Any]] = []
    for name, value in fields.items():
        match = _ARRAY_FIELD.match(name)
        if match is None:
            continue
        kind, index = match.group(1), match.group(2)
        if index is None:
            appended += [(kind, i, entry) for i, entry in enumerate(value)]
        else:
            appended.append((kind, int(index), value))
    appended.sort(key=lambda item: (item[0], item[1]))
    return [event(KINDS[kind][0], **{KINDS[kind][2]: _entry(kind, entry)}) for kind, _, entry in appended]


def _entry(kind: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry in the shape the entry routes answer with: picked field by field (``context_answers``), the
    JSON a model's ``model_dump(mode="json")`` gives without validating an entry that was validated when written."""
    if kind == "work_log":
        return context_answers.work_log_entry(entry)
    return context_answers.artifact(entry)
