"""A row of an import file to a session document: pure, no database, no clock.

Two row shapes come in: what ``handoff export`` writes (the API's Session fields, ``replayed_from``, and the
``work_log`` and ``artifacts`` arrays) and a row of the original Laravel ``agent_sessions`` table (integer ids, JSON
columns as strings or values, ``YYYY-MM-DD HH:MM:SS`` timestamps in UTC, PHP's ``[]`` for an empty object). Both
become the same session, with everything a write through the API maintains (counters, ``last_checkpoint``,
``payload_bytes``, ``duration_minutes``) recomputed from the arrays by the functions the appends use
(``sessions.views``, ``sessions.limits``). :func:`to_bson` then pages the whole log the way the sessions code pages
any whole log (``seals.paged_layout``: the open page, the sealed pages, ``appended``, ``sealed``, ``stored_bytes``,
``pages_version``), so an imported session answers every route, and takes appends, like one built live.

A row that cannot become a session raises :class:`RowError` with a message a person can act on; nothing
partial comes out. The same row always maps to the same document (entries without an id get one derived from
their position), which is what makes a second import of a file a no-op.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeGuard, cast, get_args

import bson
import msgspec
from bson.errors import InvalidDocument, InvalidStringData
from pydantic import ValidationError

from handoff import clock
from handoff.bulk.entries import (
    RowError,
    RowFacts,
    artifact_entries,
    free_form,
    kind_of,
    parse_time,
    row_facts,
    work_log_entries,
)
from handoff.config import Settings
from handoff.schemas import PrintableId
from handoff.sessions import newest_notables, notables, views
from handoff.sessions.limits import encode_entries, total_stored_size
from handoff.sessions.misses import page_bounds
from handoff.sessions.models import ENDED_STATUSES, SessionStatus
from handoff.sessions.paging import KINDS
from handoff.sessions.schemas import HandoffRequest
from handoff.sessions.seals import paged_layout

#: MongoDB's hard limit on one document.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_LENGTH = struct.Struct("<i")  # a BSON document's leading length

_PRINTABLE_ID = re.compile(get_args(PrintableId)[1].pattern)  # the API's own pattern, not a copy
_STATUSES = frozenset(status.value for status in SessionStatus)


@dataclass(frozen=True, slots=True)
class Target:
    """Where rows go: the workspace, the limits and page bounds, the Laravel plan ids to map to plan slugs, and
    the time the import's pages are sealed at (one for the whole run, so the mapping stays free of the clock)."""

    workspace_id: str
    settings: Settings
    plan_map: Mapping[str, str] = field(default_factory=dict)
    sealed_at: datetime = field(default_factory=clock.now)


# Values ------------------------------------------------------------------------------------------------------


def _optional_time(row: Mapping[str, Any], name: str) -> datetime | None:
    value = row.get(name)
    return None if value is None or value == "" else parse_time(value, name)


def _required(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None or value == "":
        raise RowError(f"missing required field {name!r}")
    return value


def _text(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None or isinstance(value, str):
        return value
    raise RowError(f"{name} must be a string, not {kind_of(value)}")


def _json_column(value: object, name: str) -> object:
    """A Laravel JSON column: a string holding JSON, or the value itself."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise RowError(f"{name} is not valid JSON: {exc}") from None


def _json_object(row: Mapping[str, Any], name: str, facts: RowFacts) -> dict[str, Any] | None:
    """A Laravel JSON column holding an object."""
    return free_form(_json_column(row.get(name), name), name, facts)


def _handoff_notes(value: object, facts: RowFacts) -> dict[str, Any] | None:
    """Handoff notes as ``POST .../handoff`` stores them: its body (``HandoffRequest``), defaults filled in.

    An empty object (PHP's ``[]``) is no notes, as the API never stores one; PHP's ``[]`` as ``context_for_next``
    is ``{}``. Keys the route would refuse, a missing summary or a value of the wrong type reject the row.
    """
    notes = free_form(value, "handoff_notes", facts)
    if not notes:
        return None
    if notes.get("context_for_next") == []:
        notes = {**notes, "context_for_next": {}}
    try:
        return HandoffRequest.model_validate(notes).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(["handoff_notes", *(str(part) for part in error["loc"])]) + f": {error['msg']}"
            for error in exc.errors()
        )
        raise RowError(f"{problems} (handoff notes are {{{', '.join(HandoffRequest.model_fields)}}})") from None


def _array(value: object, name: str) -> list[Any]:
    """A list of entries (``None`` is empty; a PHP array with gaps arrives as an object keyed by position)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.values())
    if not isinstance(value, list):
        raise RowError(f"{name} must be an array, not {kind_of(value)}")
    return value


def _status(row: Mapping[str, Any]) -> str:
    status = _required(row, "status")
    if status not in _STATUSES:
        raise RowError(f"unknown status {status!r}: expected one of {', '.join(sorted(_STATUSES))}")
    return cast("str", status)


def _is_printable_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is an id as the API takes them: 1-255 printable ASCII characters."""
    return isinstance(value, str) and len(value) <= 255 and _PRINTABLE_ID.fullmatch(value) is not None


def _printable_id(row: Mapping[str, Any], name: str) -> str | None:
    """An optional id field of an export line: a string like a ``session_id``, or absent/null."""
    value = _text(row, name)
    if value is not None and not _is_printable_id(value):
        raise RowError(f"{name} {value!r} must be 1-255 printable ASCII characters")
    return value


def _replayed_from(row: Mapping[str, Any], context_summary: dict[str, Any] | None) -> str | None:
    """The session this one continues. Laravel rows, and export lines written before it was exported, lack the
    key: a replay (made by the API, or by the original model) also names its origin in
    ``context_summary.replayed_from``, taken when it reads as an id."""
    if "replayed_from" in row:
        return _printable_id(row, "replayed_from")
    origin = (context_summary or {}).get("replayed_from")
    return origin if _is_printable_id(origin) else None


def _session_id(row: Mapping[str, Any]) -> str:
    value = _required(row, "session_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not _is_printable_id(value):
        raise RowError(f"session_id {value!r} must be 1-255 printable ASCII characters")
    return value


# Documents ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Fields:
    """What both row shapes provide, before the derived fields are computed."""

    session_id: str
    status: str
    started_at: datetime
    work_log: list[Any]
    artifacts: list[Any]
    external_id: str | None = None
    agent_api_key_id: str | None = None
    plan: str | None = None
    agent_type: str | None = None
    context_summary: dict[str, Any] | None = None
    handoff_notes: dict[str, Any] | None = None
    final_summary: str | None = None
    replayed_from: str | None = None
    legacy: dict[str, Any] | None = None
    last_active_at: datetime | None = None
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _document(fields: _Fields, target: Target, row: RowFacts) -> dict[str, Any]:
    """The session with its whole log, ``payload_bytes`` still 0."""
    started = fields.started_at
    work_log = work_log_entries(fields.work_log, default_time=started, row=row)
    artifacts = artifact_entries(fields.artifacts, default_time=started, row=row)
    # The API never stores an entry newer than its session's last activity (one update sets both), nor a last
    # activity before the start, and the analytics ``errors`` and ``stale`` routes rely on both: a supplied
    # ``last_active_at`` older than an entry or than the start is raised to it.
    last_active = max(
        [started, fields.last_active_at or started, *(entry["timestamp"] for entry in work_log + artifacts)]
    )
    ended = SessionStatus(fields.status) in ENDED_STATUSES
    # An ended session always has an end (the API sets it); an open one never has.
    ended_at = (fields.ended_at or fields.updated_at or last_active) if ended else None
    paused_at = (fields.paused_at or fields.updated_at or last_active) if fields.status == "paused" else None
    return {
        "work_log": work_log,
        "artifacts": artifacts,
        "payload_bytes": 0,
        "workspace_id": target.workspace_id,
        "session_id": fields.session_id,
        "external_id": fields.external_id,
        "agent_api_key_id": fields.agent_api_key_id,
        "plan": fields.plan,
        "agent_type": fields.agent_type,
        "status": fields.status,
        "context_summary": fields.context_summary,
        "handoff_notes": fields.handoff_notes,
        "final_summary": fields.final_summary,
        **views.sum_increments(work_log),
        "artifact_count": len(artifacts),
        # As a session created through the API: the artifacts rollup's pass takes it in (handoff.analytics.rollup).
        "rollup_dirty": True,
        "rollup_snapshot": [],
        "last_checkpoint": views.last_checkpoint(work_log),
        "last_removal": None,  # as a session created through the API stores it
        "claim": None,  # claims are not exported: an imported handoff starts unclaimed, like a new one
        "last_claim": None,
        "blob_reservations": {},  # no upload in progress, as a session created through the API starts
        "replayed_from": fields.replayed_from,
        "duration_minutes": views.duration_minutes(started, ended_at, started) if ended_at else None,
        "legacy": fields.legacy,
        "started_at": started,
        "last_active_at": last_active,
        "ended_at": ended_at,
        "paused_at": paused_at,
        "created_at": fields.created_at or started,
        "updated_at": fields.updated_at or max(last_active, ended_at or last_active),
    }


def _export_fields(row: Mapping[str, Any], facts: RowFacts, target: Target) -> _Fields:
    """A line of ``handoff export``: the Session fields (counters and durations are derived, so ignored)."""
    del target
    legacy = row.get("legacy")
    if legacy is not None and not isinstance(legacy, dict):
        raise RowError(f"legacy must be an object, not {kind_of(legacy)}")
    context_summary = free_form(row.get("context_summary"), "context_summary", facts)
    return _Fields(
        session_id=_session_id(row),
        status=_status(row),
        started_at=parse_time(_required(row, "started_at"), "started_at"),
        work_log=_array(row.get("work_log"), "work_log"),
        artifacts=_array(row.get("artifacts"), "artifacts"),
        external_id=_printable_id(row, "external_id"),
        agent_api_key_id=_text(row, "agent_api_key_id"),
        plan=_text(row, "plan"),
        agent_type=_text(row, "agent_type"),
        context_summary=context_summary,
        handoff_notes=_handoff_notes(row.get("handoff_notes"), facts),
        final_summary=_text(row, "final_summary"),
        replayed_from=_replayed_from(row, context_summary),
        legacy=legacy,
        last_active_at=_optional_time(row, "last_active_at"),
        ended_at=_optional_time(row, "ended_at"),
        paused_at=_optional_time(row, "paused_at"),
        created_at=_optional_time(row, "created_at"),
        updated_at=_optional_time(row, "updated_at"),
    )


def _legacy_id(row: Mapping[str, Any], name: str) -> int | None:
    value = row.get(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise RowError(f"{name} must be an integer id, not {value!r}")


def _laravel_fields(row: Mapping[str, Any], facts: RowFacts, target: Target) -> _Fields:
    """A row of the Laravel ``agent_sessions`` table; its integer ids are kept under ``legacy``."""
    plan_id = _legacy_id(row, "agent_plan_id")
    legacy = {
        "id": _legacy_id(row, "id"),
        "workspace_id": _legacy_id(row, "workspace_id"),
        "agent_api_key_id": _legacy_id(row, "agent_api_key_id"),
        "agent_plan_id": plan_id,
    }
    context_summary = _json_object(row, "context_summary", facts)
    return _Fields(
        session_id=_session_id(row),
        status=_status(row),
        started_at=parse_time(_required(row, "started_at"), "started_at"),
        work_log=_array(_json_column(row.get("work_log"), "work_log"), "work_log"),
        artifacts=_array(_json_column(row.get("artifacts"), "artifacts"), "artifacts"),
        plan=target.plan_map.get(str(plan_id)) if plan_id is not None else None,
        agent_type=_text(row, "agent_type"),
        context_summary=context_summary,
        replayed_from=_replayed_from(row, context_summary),
        handoff_notes=_handoff_notes(_json_column(row.get("handoff_notes"), "handoff_notes"), facts),
        final_summary=_text(row, "final_summary"),
        legacy=legacy,
        last_active_at=_optional_time(row, "last_active_at"),
        ended_at=_optional_time(row, "ended_at"),
        created_at=_optional_time(row, "created_at"),
        updated_at=_optional_time(row, "updated_at"),
    )


_FIELDS: dict[str, Callable[[Mapping[str, Any], RowFacts, Target], _Fields]] = {
    "jsonl": _export_fields,
    "laravel": _laravel_fields,
}


def to_document(
    row: Mapping[str, Any], target: Target, *, shape: str = "jsonl", source: bytes | None = None
) -> dict[str, Any]:
    """The session of a row of this shape (``jsonl``: what ``handoff export`` writes; ``laravel``), its whole log
    on it (``to_bson`` pages it).

    ``source`` is the row's line as read, when there is one: it only lets the checks skip what the line shows
    cannot fail (a short line holds no oversized payload, a line without ``$`` no operator key). What only
    encoding finds (over 16 MiB, an integer beyond 64 bits in such a line) is refused by :func:`to_bson`.
    """
    facts = row_facts(source, target.settings)
    document = _document(_FIELDS[shape](row, facts, target), target, facts)
    try:
        document["payload_bytes"] = total_stored_size(document["work_log"]) + total_stored_size(document["artifacts"])
    except (OverflowError, InvalidDocument, InvalidStringData) as exc:
        raise _unstorable(row, target, shape, exc) from None
    return document


def _unstorable(row: Mapping[str, Any], target: Target, shape: str, exc: Exception) -> RowError:
    """Why a mapped row cannot be encoded: the checks the line let us skip say where; else BSON's own words."""
    strict = RowFacts(target.settings)
    _document(_FIELDS[shape](row, strict, target), target, strict)
    return RowError(f"the session cannot be stored in MongoDB: {exc}")


def from_export(row: Mapping[str, Any], target: Target, *, source: bytes | None = None) -> dict[str, Any]:
    """:func:`to_document` of a line of ``handoff export``."""
    return to_document(row, target, shape="jsonl", source=source)


def from_laravel(row: Mapping[str, Any], target: Target, *, source: bytes | None = None) -> dict[str, Any]:
    """:func:`to_document` of a row of the Laravel table."""
    return to_document(row, target, shape="laravel", source=source)


class Encoded(NamedTuple):
    """A row's session, ready to write: the paged session document, its sealed pages, their notable entries
    (``sessions.notables``) and its newest notables, BSON-encoded."""

    session_id: str
    bson: bytes
    pages: tuple[bytes, ...] = ()
    notables: tuple[bytes, ...] = ()
    #: Its newest notables (``sessions.newest_notables``), when it has pages.
    newest_notables: bytes | None = None


def _encode(document: dict[str, Any], what: str, arrays: Mapping[str, bytes] | None = None) -> bytes:
    """``bson.encode(document)``, refused past MongoDB's limit; ``arrays``: fields already encoded (their BSON
    arrays), written as they are in place of the document's fields of those names, after the others."""
    if not arrays:
        encoded = bson.encode(document)
    else:
        head = bson.encode({name: value for name, value in document.items() if name not in arrays})
        tail = b"".join(b"\x04" + name.encode() + b"\x00" + array for name, array in arrays.items())
        encoded = _LENGTH.pack(len(head) + len(tail)) + head[4:-1] + tail + b"\x00"
    if len(encoded) > MAX_DOCUMENT_BYTES:
        raise RowError(
            f"{what} is {len(encoded):,} bytes as a BSON document, over MongoDB's limit of "
            f"{MAX_DOCUMENT_BYTES:,} bytes (16 MiB)"
        )
    return encoded


def to_bson(row: Mapping[str, Any], target: Target, *, shape: str = "jsonl", source: bytes | None = None) -> Encoded:
    """The row's session in the paged layout (``seals.paged_layout`` with the settings' page bounds), encoded.

    A log of any length fits: its older entries go to pages. What cannot be stored (more bytes than
    ``max_session_bytes``, a document over MongoDB's 16 MiB, a value BSON cannot hold) is a :class:`RowError`.
    Each array is encoded once: its size is read off that encoding, which goes into the session document as it
    is when the whole log stays on it (no page sealed, most sessions).
    """
    facts = row_facts(source, target.settings)
    document = _document(_FIELDS[shape](row, facts, target), target, facts)
    try:
        arrays = {kind: encode_entries(document[kind]) for kind in KINDS}
        totals = {kind: encoded.stored_size for kind, encoded in arrays.items()}
        session, pages = paged_layout(document, page_bounds(target.settings), target.sealed_at, totals=totals)
        noted = notables.attach(session, pages) if pages else []
        cap = target.settings.max_session_bytes
        if cap and session["payload_bytes"] > cap:
            raise RowError(
                f"the session stores {session['payload_bytes']:,} bytes, over the cap of {cap:,} "
                "(HANDOFF_MAX_SESSION_BYTES) that the API keeps every session under"
            )
        whole: dict[str, bytes] | None = None if pages else {kind: encoded.array for kind, encoded in arrays.items()}
        encoded = _encode(session, "the session", whole)
        encoded_pages = tuple(_encode(page, f"page {page['no']} of its {page['kind']}") for page in pages)
        encoded_notables = tuple(bson.encode(notable) for notable in noted)  # each smaller than its page
        copy = None
        if pages:
            copy = bson.encode(
                newest_notables.of_documents(
                    session["workspace_id"], session["session_id"], session["pages_version"], noted
                )
            )
    except (OverflowError, InvalidDocument, InvalidStringData) as exc:
        raise _unstorable(row, target, shape, exc) from None
    return Encoded(document["session_id"], encoded, encoded_pages, encoded_notables, copy)


def load_plan_map(text: str) -> dict[str, str]:
    """``--plan-map``: a JSON object of Laravel plan id to plan slug."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(slug, str) and slug for slug in value.values()):
        raise ValueError('expected a JSON object of plan id to plan slug, like {"12": "auth-rewrite"}')
    return {str(key): slug for key, slug in value.items()}
