"""Per-entry limits from the settings: the sizes a single append may bring.

Pydantic checks the shape of a body; these checks depend on configuration (api.md "Limits") and on the
serialised size of free-form data, so they run in the service, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import bson

from handoff.config import Settings
from handoff.errors import FieldError, Invalid, TooLarge


def serialized_size(value: object) -> int:
    """Bytes of a value as compact JSON: the size a client sent."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def stored_size(entry: Mapping[str, Any]) -> int:
    """Bytes an entry adds to the session document (BSON, with the array slot's overhead)."""
    return len(bson.encode(entry)) + 16


def total_stored_size(entries: Sequence[Mapping[str, Any]]) -> int:
    """``stored_size`` summed over entries, from one BSON encoding of the whole list (an importer's hot path).

    BSON frames an array as a document whose keys are the indexes; taking that framing away leaves exactly the
    entries' own encodings.
    """
    if not entries:
        return 0
    framing = 4 + 2 + 4 + 1 + 1  # outer length, element type and empty key, array length, both terminators
    keys = sum(2 + len(str(index)) for index in range(len(entries)))  # each element's type byte and index key
    return len(bson.encode({"": list(entries)})) - framing - keys + 16 * len(entries)


def check_text(field: str, value: str | None, limit: int) -> None:
    """422 when a string is over its character limit."""
    if value is not None and len(value) > limit:
        raise Invalid(
            f"{field} is longer than {limit} characters",
            errors=[FieldError(field=field, message=f"at most {limit} characters")],
        )


def check_payload(field: str, value: object, settings: Settings) -> None:
    """413 when a free-form object is over the serialised-size limit."""
    if value is None:
        return
    size = serialized_size(value)
    if size > settings.max_payload_bytes:
        raise TooLarge(f"{field} is {size} bytes serialized; the limit is {settings.max_payload_bytes}")


def check_entry(entry: Mapping[str, Any], settings: Settings) -> None:
    """Every limit of one work-log entry or artifact."""
    check_text("action", entry.get("action"), settings.max_text_chars)
    check_text("message", entry.get("message"), settings.max_text_chars)
    check_text("path", entry.get("path"), settings.max_path_chars)
    for field in ("details", "data", "metadata"):
        check_payload(field, entry.get(field), settings)
