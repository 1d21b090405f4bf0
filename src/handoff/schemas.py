"""Schema building blocks shared by every domain's API models.

Inputs forbid unknown fields (an agent that mistypes a field name gets a 422, not silent data loss); times
serialise as ISO 8601 UTC with an explicit ``+00:00`` offset; free-form objects are checked for keys that
MongoDB would interpret (``$``-prefixed, NUL) and for nesting deeper than a document may go.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from handoff import clock

MAX_NESTING_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # BSON stores no wider integer


def isoformat(value: datetime) -> str:
    """How the API writes a time (what :data:`UtcDatetime` serialises to; answers shaped without a model use it)."""
    if value.tzinfo is None:  # read as stored (BSON dates are UTC): the same text, at half the cost of as_utc's
        return value.isoformat(timespec="microseconds") + "+00:00"
    return clock.as_utc(value).isoformat(timespec="microseconds")


UtcDatetime = Annotated[datetime, PlainSerializer(isoformat, return_type=str)]
"""A datetime written as ``2026-11-24T15:30:00.123000+00:00``."""


def check_free_form(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse keys MongoDB would treat as operators, nesting it cannot store and integers BSON cannot hold."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_NESTING_DEPTH:
            raise ValueError(f"nested deeper than {MAX_NESTING_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                if key.startswith("$") or "\x00" in key:
                    raise ValueError(f"key {where + key!r} may not start with '$' or contain NUL")
                stack.append((child, depth + 1, f"{where}{key}."))
        elif isinstance(node, list):
            stack.extend((child, depth + 1, where) for child in node)
        elif isinstance(node, int) and not isinstance(node, bool) and not INT64_MIN <= node <= INT64_MAX:
            raise ValueError(f"integer at {where.rstrip('.') or 'top level'!r} does not fit in 64 bits")
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(check_free_form)]
"""A JSON object stored as plain data."""

PRINTABLE_ASCII = r"^[\x20-\x7e]+$"
"""Printable ASCII, the space included (as api.md's "printable ASCII characters" reads, and C's ``isprint``)."""

PrintableId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=PRINTABLE_ASCII)]
"""1..255 printable ASCII characters: external ids and idempotency keys."""

ENTRY_ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
"""The alphabet of entry ids (and of the prefixes the work log is filtered by)."""

EntryId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ENTRY_ID_PATTERN)]
"""A client-chosen id of a work-log entry or artifact."""

ShortText = Annotated[str, StringConstraints(max_length=255)]

BlobId = Annotated[str, StringConstraints(pattern=r"^blob_[0-9a-f]{32}$")]
"""The id of a blob of a session (``blob_<32 hex>``), as entries and artifacts reference it."""


class InputModel(BaseModel):
    """A request body: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class OutputModel(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)


def items_field(description: str) -> Any:
    """A documented ``items`` list."""
    return Field(default_factory=list, description=description)
