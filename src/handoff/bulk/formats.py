"""Readers of import files: JSON Lines or one top-level JSON array, streamed, one record per row.

The container is told by the first non-space byte (``[`` is a JSON array, anything else JSON Lines); the row
shape (what ``handoff export`` writes or a row of the original Laravel ``agent_sessions`` table), under
``--format auto``, by :func:`looks_like_laravel`, row by row. Nothing here holds more than one row (or one line) in
memory: JSON Lines are read line by line, an array is fed to ijson's push parser a line (at most 64 KiB) at a
time, so a 10 GB dump on a single line streams as well as a pretty-printed one.

A row that cannot be parsed is not an exception: it comes out as a :class:`Record` with ``error`` set (or, for
a JSON Lines line, from :func:`parse_line`), so the importer can reject that line and go on. Line numbers are
1-based physical lines of the file; for a JSON array, the line where the row starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import ijson  # type: ignore[import-untyped]
import msgspec

Shape = Literal["jsonl", "laravel"]
Format = Literal["auto", "jsonl", "laravel"]

PIECE_BYTES = 64 * 1024
BOM = b"\xef\xbb\xbf"
#: Bytes of the offending input kept in a reject when a JSON array breaks off (the "line" may be the whole file).
MAX_BROKEN_SOURCE = 10_000
_decode = msgspec.json.Decoder().decode


@dataclass(slots=True)
class Record:
    """One row of an import file, with where it came from.

    A JSON Lines record carries its line undecoded (``raw``; :func:`parse_line` decodes it where the CPU work is
    done); a JSON array record carries its parsed ``row``; a row that could not be read carries ``error``.
    """

    line: int
    raw: bytes | None = None
    row: dict[str, Any] | None = None
    error: str | None = None

    @property
    def source(self) -> str:
        """The text of the line, or the row re-serialized when it came from a JSON array."""
        if self.raw is not None:
            return self.raw.decode("utf-8", errors="replace").rstrip("\r\n")
        return json.dumps(self.row, ensure_ascii=False, default=str)


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON Lines line to a row, or to why it is not one."""
    try:
        row = _decode(raw)
    except msgspec.DecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(row, dict):
        return None, f"a line must be a JSON object, not {type(row).__name__}"
    return row, None


def looks_like_laravel(row: dict[str, Any]) -> bool:
    """A row of the Laravel table: integer ids, JSON columns as strings, ``agent_plan_id``.

    What ``handoff export`` writes has none of these (its ``workspace_id`` is a string, its arrays are arrays).
    """
    for name in ("id", "workspace_id", "agent_api_key_id", "agent_plan_id"):
        value = row.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return True
    if "agent_plan_id" in row:
        return True
    return any(isinstance(row.get(name), str) for name in ("work_log", "artifacts", "context_summary"))


class FileReader:
    """Iterate the records of one file; ``bytes_read`` says how far it has got (for progress)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bytes_read = 0

    def __iter__(self) -> Iterator[Record]:
        with self.path.open("rb") as handle:
            head = handle.read(PIECE_BYTES).removeprefix(BOM).lstrip()
            handle.seek(0)
            if head.startswith(b"["):
                yield from self._array(handle)
            else:
                yield from self._lines(handle)

    def _lines(self, handle: IO[bytes]) -> Iterator[Record]:
        for number, line in enumerate(handle, 1):
            self.bytes_read += len(line)
            raw = line[len(BOM) :] if number == 1 and line.startswith(BOM) else line
            if raw.strip():
                yield Record(number, raw=raw)

    def _array(self, handle: IO[bytes]) -> Iterator[Record]:
        rows: list[Any] = ijson.sendable_list()
        parser = ijson.items_coro(rows, "item", use_float=True)
        line = 1
        start: int | None = None  # the line where the row being parsed began
        position = 0
        for piece in iter(lambda: handle.readline(PIECE_BYTES), b""):
            self.bytes_read += len(piece)
            if start is None and piece.strip(b" \t\r\n,[\xef\xbb\xbf"):
                start = line
            try:
                parser.send(piece)
            except ijson.JSONError as exc:
                yield self._broken(line, exc, piece)
                return
            for row in rows:
                position += 1
                yield self._array_row(start if start is not None else line, position, row)
                start = line
            if rows:
                del rows[:]
                start = None
            if piece.endswith(b"\n"):
                line += 1
        try:
            parser.close()
        except ijson.JSONError as exc:
            yield self._broken(line, exc, b"")
            return
        for row in rows:
            position += 1
            yield self._array_row(start if start is not None else line, position, row)

    @staticmethod
    def _array_row(line: int, position: int, row: Any) -> Record:
        if isinstance(row, dict):
            return Record(line, row=row)
        return Record(line, error=f"row {position} of the array is not a JSON object but {type(row).__name__}")

    @staticmethod
    def _broken(line: int, exc: Exception, piece: bytes) -> Record:
        return Record(
            line,
            error=f"invalid JSON: {exc}; the rest of the file was not read",
            raw=piece[:MAX_BROKEN_SOURCE],
        )
