"""One work-log entry or artifact of an imported row to its stored form, and the checks every value passes.

The rules are the API's: entry ids match ``EntryId``, types and artifact actions are the enums, free-form objects
pass ``check_free_form``, entries pass ``limits.check_entry``. What the row's source line proves cannot fail is
skipped (:class:`RowFacts`): an import checks millions of entries and the line is at hand. An entry without an
id gets one from its position (``legacy-<i>``, ``legacy-artifact-<i>``), so the same row always maps the same.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NamedTuple, get_args

from handoff import clock
from handoff.config import Settings
from handoff.errors import Invalid, TooLarge
from handoff.schemas import EntryId, check_free_form
from handoff.sessions.limits import check_entry
from handoff.sessions.models import ArtifactAction, EntryType

#: Compact JSON of a parsed value is at most 4.5 times its source text (``1e15`` becomes ``1000000000000000.0``;
#: nothing else grows), so a line under ``max_payload_bytes / 5`` cannot hold a payload over the limit.
PAYLOAD_GROWTH = 5

_ENTRY_ID = re.compile(get_args(EntryId)[1].pattern)  # the API's own pattern, not a copy
_ENTRY_TYPES = frozenset(kind.value for kind in EntryType)
_ARTIFACT_ACTIONS = frozenset(action.value for action in ArtifactAction)
_fromisoformat = datetime.fromisoformat
_TIMESTAMP_HINT = "an ISO 8601 timestamp or 'YYYY-MM-DD HH:MM:SS'"


class RowError(ValueError):
    """A row that cannot become a session; the message says what to fix."""


# Values ------------------------------------------------------------------------------------------------------


def kind_of(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def parse_time(value: object, name: str) -> datetime:
    """A timestamp as UTC at BSON (millisecond) precision; naive values are UTC."""
    if type(value) is str:
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            try:
                parsed = _fromisoformat(value.strip())
            except ValueError:
                raise RowError(f"{name}: {value!r} is not {_TIMESTAMP_HINT}") from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise RowError(f"{name}: expected {_TIMESTAMP_HINT}, got {kind_of(value)}")
    if parsed.tzinfo is not UTC:
        parsed = clock.as_utc(parsed)
    if parsed.microsecond % 1000:
        parsed = parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
    return parsed


def free_form(value: object, name: str, row: RowFacts) -> dict[str, Any] | None:
    """A free-form object (``None`` stays ``None``; PHP's empty array ``[]`` is an empty object)."""
    if value is None:
        return None
    if type(value) is dict:
        if row.plain and _flat(value):
            # No nesting, no '$' or NUL in the line: of check_free_form's refusals only a huge integer is left,
            # which encoding the document catches (to_bson then runs every check to say where it is).
            return value
        try:
            check_free_form(value)
        except ValueError as exc:
            raise RowError(f"{name}: {exc}") from None
        return value
    if type(value) is list and not value:
        return {}
    raise RowError(f"{name} must be an object, not {kind_of(value)}")


def _flat(value: dict[str, Any]) -> bool:
    for item in value.values():  # noqa: SIM110 - a plain loop: this runs for every payload of every entry
        if type(item) is dict or type(item) is list:
            return False
    return True


# Entries -----------------------------------------------------------------------------------------------------


class RowFacts(NamedTuple):
    """What the checks of one row may take for granted, learnt from its source line when it is known (a named
    tuple: one is made for every row)."""

    settings: Settings
    small: bool = False  # the line is too short to hold a payload over max_payload_bytes
    plain: bool = False  # the line holds no '$' and no escaped NUL, so no key can be refused


def row_facts(source: bytes | None, settings: Settings) -> RowFacts:
    if not source:
        return RowFacts(settings)
    return RowFacts(
        settings,
        small=len(source) * PAYLOAD_GROWTH <= settings.max_payload_bytes,
        # JSON spells an escaped '$' or NUL "\u0024" or "\u0000"; most lines hold no backslash at all, which one
        # memchr says (a search for the escapes themselves costs ten times more).
        plain=b"$" not in source and (b"\\" not in source or (b"\\u0000" not in source and b"\\u0024" not in source)),
    )


def _limits(entry: dict[str, Any], text: str, limit: int, row: RowFacts, *, array: str, index: int) -> None:
    """The API's limits on one entry (``check_entry``); a small line only needs its one text measured."""
    if row.small and len(text) <= limit:
        return
    try:
        check_entry(entry, row.settings)
    except (Invalid, TooLarge) as exc:
        raise RowError(f"{array}[{index}]: {exc.detail}") from None


def _entry_id(value: object, array: str, index: int, default: str, seen: set[str]) -> str:
    if value is None or value == "":
        value = f"{default}{index}"
    elif type(value) is int:
        value = str(value)
    if type(value) is not str or len(value) > 64 or not _ENTRY_ID.fullmatch(value):
        raise RowError(f"{array}[{index}].id {value!r} must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    if value in seen:
        raise RowError(f"{array}[{index}].id {value!r} is used by another entry of the same array")
    seen.add(value)
    return value


def _missing_text(raw: dict[str, Any], key: str, array: str, index: int) -> RowError:
    return RowError(f"{array}[{index}].{key} must be a non-empty string" + ("" if key in raw else " (missing)"))


def _entry_time(value: object, array: str, index: int, default: datetime) -> datetime:
    if type(value) is str:
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is UTC and not parsed.microsecond % 1000:
                return parsed  # what export writes: nothing to normalize
    elif value is None:
        return default
    if value == "":
        return default
    return parse_time(value, f"{array}[{index}].timestamp")


def _entry_object(value: object, array: str, index: int, field: str, row: RowFacts) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is dict and row.plain and _flat(value):
        return value  # the common case, decided without building a name
    return free_form(value, f"{array}[{index}].{field}", row)


def work_log_entries(raws: list[Any], *, default_time: datetime, row: RowFacts) -> list[dict[str, Any]]:
    """The work log in its stored form, each entry checked in one pass.

    An entry as ``handoff export`` writes it (a valid unused id, a UTC timestamp at millisecond precision, a
    known type, a non-empty text within the limit of a short line, no payload or a flat one in a plain line) is
    taken as it is, its fields checked in place, without the per-field helpers: an import checks millions. Any
    other entry goes through :func:`work_log_entry`, which normalizes it or says what is wrong; the fast path
    only ever takes an entry that one would store unchanged (``test_bulk_mapping`` holds them side by side).
    """
    seen: set[str] = set()
    entries: list[dict[str, Any]] = []
    match, plain, types = _ENTRY_ID.fullmatch, row.plain, _ENTRY_TYPES
    short = row.settings.max_text_chars if row.small else -1  # a text this long or shorter needs no check_entry
    for index, raw in enumerate(raws):
        if type(raw) is dict:
            get = raw.get
            entry_id, stamp = get("id"), get("timestamp")
            if type(entry_id) is str and type(stamp) is str and entry_id not in seen and match(entry_id):
                try:
                    at = _fromisoformat(stamp)
                except ValueError:
                    at = None
                if at is not None and at.tzinfo is UTC and not at.microsecond % 1000 and len(entry_id) <= 64:
                    action, entry_type = get("action"), get("type")
                    if action is not None:
                        details = get("details")
                        if (
                            (entry_type is None or entry_type == "action")
                            and type(action) is str
                            and 0 < len(action) <= short
                            and (details is None or (plain and type(details) is dict and _flat(details)))
                        ):
                            seen.add(entry_id)
                            entries.append({"id": entry_id, "action": action, "details": details, "timestamp": at})
                            continue
                    elif type(entry_type) is str and entry_type in types:
                        message, data = get("message"), get("data")
                        if (
                            type(message) is str
                            and 0 < len(message) <= short
                            and (data is None or (plain and type(data) is dict and _flat(data)))
                        ):
                            seen.add(entry_id)
                            entries.append(
                                {
                                    "id": entry_id,
                                    "message": message,
                                    "type": entry_type,
                                    "data": data or {},
                                    "timestamp": at,
                                }
                            )
                            continue
        entries.append(work_log_entry(raw, index, default_time=default_time, seen=seen, row=row))
    return entries


def artifact_entries(raws: list[Any], *, default_time: datetime, row: RowFacts) -> list[dict[str, Any]]:
    """The artifacts in their stored form, each checked in one pass (as :func:`work_log_entries`; any other than
    the common form goes through :func:`artifact_entry`)."""
    seen: set[str] = set()
    entries: list[dict[str, Any]] = []
    match, plain, actions = _ENTRY_ID.fullmatch, row.plain, _ARTIFACT_ACTIONS
    short = row.settings.max_path_chars if row.small else -1
    for index, raw in enumerate(raws):
        if type(raw) is dict:
            get = raw.get
            entry_id, stamp, action, path = get("id"), get("timestamp"), get("action"), get("path")
            if (
                type(entry_id) is str
                and type(stamp) is str
                and type(action) is str
                and type(path) is str
                and entry_id not in seen
                and action in actions
                and 0 < len(path) <= short
                and len(entry_id) <= 64
                and match(entry_id)
            ):
                try:
                    at = _fromisoformat(stamp)
                except ValueError:
                    at = None
                metadata = get("metadata")
                if (
                    at is not None
                    and at.tzinfo is UTC
                    and not at.microsecond % 1000
                    and (metadata is None or (plain and type(metadata) is dict and _flat(metadata)))
                ):
                    seen.add(entry_id)
                    entries.append(
                        {"id": entry_id, "path": path, "action": action, "metadata": metadata, "timestamp": at}
                    )
                    continue
        entries.append(artifact_entry(raw, index, default_time=default_time, seen=seen, row=row))
    return entries


def work_log_entry(raw: object, index: int, *, default_time: datetime, seen: set[str], row: RowFacts) -> dict[str, Any]:
    """One work-log entry in its stored form: an action entry when it has ``action`` and no type, else typed."""
    if type(raw) is not dict:
        raise RowError(f"work_log[{index}] must be an object, not {kind_of(raw)}")
    get = raw.get
    entry_id = get("id")
    if type(entry_id) is str and entry_id not in seen and 0 < len(entry_id) <= 64 and _ENTRY_ID.fullmatch(entry_id):
        seen.add(entry_id)
    else:
        entry_id = _entry_id(entry_id, "work_log", index, "legacy-", seen)
    action, entry_type = get("action"), get("type")
    entry: dict[str, Any]
    if action is not None and (entry_type is None or entry_type == "action"):
        if type(action) is not str or not action:
            raise _missing_text(raw, "action", "work_log", index)
        entry = {
            "id": entry_id,
            "action": action,
            "details": _entry_object(get("details"), "work_log", index, "details", row),
            "timestamp": _entry_time(get("timestamp"), "work_log", index, default_time),
        }
        _limits(entry, action, row.settings.max_text_chars, row, array="work_log", index=index)
        return entry
    if entry_type is None:
        entry_type = EntryType.INFO.value
    elif type(entry_type) is not str or entry_type not in _ENTRY_TYPES:
        raise RowError(f"work_log[{index}].type {entry_type!r} is not one of {', '.join(sorted(_ENTRY_TYPES))}")
    message = get("message")
    if type(message) is not str or not message:
        raise _missing_text(raw, "message", "work_log", index)
    entry = {
        "id": entry_id,
        "message": message,
        "type": entry_type,
        "data": _entry_object(get("data"), "work_log", index, "data", row) or {},
        "timestamp": _entry_time(get("timestamp"), "work_log", index, default_time),
    }
    _limits(entry, message, row.settings.max_text_chars, row, array="work_log", index=index)
    return entry


def artifact_entry(raw: object, index: int, *, default_time: datetime, seen: set[str], row: RowFacts) -> dict[str, Any]:
    """One artifact in its stored form (``action`` defaults to ``modified``)."""
    if type(raw) is not dict:
        raise RowError(f"artifacts[{index}] must be an object, not {kind_of(raw)}")
    get = raw.get
    action = get("action")
    if action is None:
        action = ArtifactAction.MODIFIED.value
    elif type(action) is not str or action not in _ARTIFACT_ACTIONS:
        names = ", ".join(sorted(_ARTIFACT_ACTIONS))
        raise RowError(f"artifacts[{index}].action {action!r} is not one of {names}")
    entry_id = get("id")
    if type(entry_id) is str and entry_id not in seen and 0 < len(entry_id) <= 64 and _ENTRY_ID.fullmatch(entry_id):
        seen.add(entry_id)
    else:
        entry_id = _entry_id(entry_id, "artifacts", index, "legacy-artifact-", seen)
    path = get("path")
    if type(path) is not str or not path:
        raise _missing_text(raw, "path", "artifacts", index)
    entry = {
        "id": entry_id,
        "path": path,
        "action": action,
        "metadata": _entry_object(get("metadata"), "artifacts", index, "metadata", row),
        "timestamp": _entry_time(get("timestamp"), "artifacts", index, default_time),
    }
    _limits(entry, path, row.settings.max_path_chars, row, array="artifacts", index=index)
    return entry
