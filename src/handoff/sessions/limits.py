"""Per-entry limits from the settings: the sizes a single append may bring.

Pydantic checks the shape of a body; these checks depend on configuration (api.md "Limits") and on the
serialised size of free-form data, so they run in the service, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import bson

from handoff.config import Settings
from handoff.errors import FieldError, Invalid, TooLarge


def serialized_size(value: object) -> int:
    """Bytes of a value as compact JSON: the size a client sent."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


#: What an entry's array slot costs beside its own bytes, as ``stored_size`` counts it.
ENTRY_SLOT = 16


def stored_size(entry: Mapping[str, Any]) -> int:
    """Bytes an entry adds to the session document (BSON, with the array slot's overhead)."""
    return len(bson.encode(entry)) + ENTRY_SLOT


class EncodedEntries(NamedTuple):
    """A list of entries BSON-encoded once: the array as it sits in a document, and what it weighs."""

    #: The array's own BSON (what follows an array element's type byte and name in a document).
    array: bytes
    #: ``stored_size`` summed over the entries.
    stored_size: int


#: Bytes of ``bson.encode({"": []})`` around the array: outer length, element type, empty name's NUL ... outer NUL.
_WRAPPED_ARRAY_HEAD, _WRAPPED_ARRAY_TAIL = 6, 1
#: The array document's own framing: its length and its terminator.
_ARRAY_FRAMING = 4 + 1


def encode_entries(entries: Sequence[Mapping[str, Any]]) -> EncodedEntries:
    """The entries' BSON array, from one encoding, and their total ``stored_size`` read off it.

    BSON frames an array as a document whose keys are the indexes; taking that framing away leaves exactly the
    entries' own encodings. A caller that writes the entries may put ``array`` into the document it encodes
    (see ``bulk.mapping``) instead of encoding them a second time.
    """
    wrapped = bson.encode({"": entries if isinstance(entries, list) else list(entries)})
    array = wrapped[_WRAPPED_ARRAY_HEAD : len(wrapped) - _WRAPPED_ARRAY_TAIL]
    size = len(array) - _ARRAY_FRAMING - index_keys(len(entries)) + ENTRY_SLOT * len(entries)
    return EncodedEntries(array, size)


def total_stored_size(entries: Sequence[Mapping[str, Any]]) -> int:
    """``stored_size`` summed over entries, from one BSON encoding of the whole list (an importer's hot path)."""
    return encode_entries(entries).stored_size if entries else 0


def index_keys(count: int) -> int:
    """Bytes of the per-element framing of an array of ``count`` documents: type byte, decimal index, NUL."""
    total = 3 * count  # every index has a first digit
    bound = 10
    while bound < count:  # and the ones from 10, 100, ... one more digit each
        total += count - bound
        bound *= 10
    return total


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
