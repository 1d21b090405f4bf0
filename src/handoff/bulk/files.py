"""The files around an import: checking the inputs can be read, the plan map, the rejects file.

Everything here fails with :class:`UnreadableFile`, one line naming the file, which ``handoff import`` turns into
exit status 2. The inputs and the plan map are checked before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from handoff.bulk import mapping

_SNIFF_BYTES = 4096


class UnreadableFile(Exception):
    """An input (or the rejects file) cannot be opened at all; the message is one line naming it."""


def default_rejects_path(first: str | Path) -> Path:
    """``<first PATH>.rejects.jsonl``."""
    return Path(f"{first}.rejects.jsonl")


def check_readable(paths: Sequence[str | Path]) -> int:
    """Total bytes of the inputs, or :class:`UnreadableFile` for the first one that cannot be read as text."""
    total = 0
    for path in map(Path, paths):
        try:
            with path.open("rb") as handle:
                head = handle.read(_SNIFF_BYTES)
            total += path.stat().st_size
        except OSError as exc:
            raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from exc
        stripped = head.lstrip().removeprefix(b"\xef\xbb\xbf")
        if b"\x00" in head or (stripped[:1] not in (b"{", b"[", b"") and not _is_text(head)):
            raise UnreadableFile(f"cannot read {path}: not a JSON or JSON Lines file (binary content)")
    return total


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut by the sniff, not binary
    return True


def read_plan_map(path: str | Path) -> dict[str, str]:
    """``--plan-map FILE``: a JSON object of Laravel plan id to plan slug, or :class:`UnreadableFile`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"cannot read plan map {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        return mapping.load_plan_map(text)
    except ValueError as exc:
        raise UnreadableFile(f"cannot read plan map {path}: {exc}") from exc


class RejectsFile:
    """This run's rejects: written from the first reject on; a run without rejects removes an older file."""

    def __init__(self, path: Path, *, with_file: bool) -> None:
        self.path = path
        self.with_file = with_file
        self._handle: IO[str] | None = None

    def check_writable(self) -> None:
        if not self.path.parent.is_dir():
            raise UnreadableFile(f"cannot write rejects to {self.path}: no such directory {self.path.parent}")

    def add(self, *, line: int, error: str, source: str, file: Path) -> None:
        if self._handle is None:
            try:
                self._handle = self.path.open("w", encoding="utf-8")
            except OSError as exc:
                raise UnreadableFile(f"cannot write rejects to {self.path}: {exc.strerror or exc}") from exc
        record: dict[str, Any] = {"line": line, "error": error, "source": source}
        if self.with_file:
            record["file"] = str(file)
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    @property
    def used(self) -> bool:
        return self._handle is not None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        else:
            self.path.unlink(missing_ok=True)  # the rejects of an earlier run would read as this run's
