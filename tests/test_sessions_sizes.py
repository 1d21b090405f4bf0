"""The stored size of entries: one by one (appends) and of a whole list at once (the importer's shortcut)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import bson
import pytest

from handoff.sessions.limits import encode_entries, stored_size, total_stored_size

ENTRY: dict[str, Any] = {"id": "e1", "message": "m", "type": "info", "data": {"k": [1, 2.5, None, "x" * 300]}}


@pytest.mark.parametrize("count", [0, 1, 9, 10, 11, 99, 100, 101, 1_000, 12_345])
def test_a_list_at_once_sizes_as_its_entries_one_by_one(count: int) -> None:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    entries = [{**ENTRY, "id": f"e{n}", "timestamp": at, "data": {"n": n, "s": "y" * (n % 37)}} for n in range(count)]
    assert total_stored_size(entries) == sum(stored_size(entry) for entry in entries)


@pytest.mark.parametrize("count", [0, 1, 10, 101])
def test_an_encoded_list_is_the_array_a_document_holds(count: int) -> None:
    entries = [{**ENTRY, "id": f"e{n}"} for n in range(count)]
    encoded = encode_entries(entries)
    assert encoded.stored_size == sum(stored_size(entry) for entry in entries)
    document = bson.encode({"log": entries})
    assert document == struct.pack("<i", len(encoded.array) + 10) + b"\x04log\x00" + encoded.array + b"\x00"
