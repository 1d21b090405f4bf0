"""How an import shows its progress: a rich bar on a terminal, a plain line every few seconds otherwise.

Both report bytes read of the total, sessions read and their rate, and rows rejected so far; both write to
stderr, so stdout carries only the import's summary line.
"""

from __future__ import annotations

import time
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from handoff.bulk.importer import ProgressSink

PLAIN_INTERVAL_SECONDS = 2.0


class RichProgress:
    """A progress bar for a terminal."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[sessions]:,} sessions ({task.fields[rate]:,.0f}/s)"),
            TextColumn("{task.fields[rejected]:,} rejected"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID | None = None
        self._started = time.monotonic()

    def start(self, total_bytes: int) -> None:
        self._started = time.monotonic()
        self._task = self._progress.add_task("import", total=total_bytes, sessions=0, rate=0.0, rejected=0)
        self._progress.start()

    def update(self, *, bytes_read: int, sessions: int, rejected: int) -> None:
        if self._task is None:
            return
        rate = sessions / max(time.monotonic() - self._started, 1e-6)
        self._progress.update(self._task, completed=bytes_read, sessions=sessions, rate=rate, rejected=rejected)

    def finish(self) -> None:
        self._progress.stop()


class PlainProgress:
    """A line every few seconds, for logs and pipes."""

    def __init__(self, stream: IO[str], *, interval: float = PLAIN_INTERVAL_SECONDS) -> None:
        self._stream = stream
        self._interval = interval
        self._total = 0
        self._started = self._last = time.monotonic()
        self._state = (0, 0, 0)

    def start(self, total_bytes: int) -> None:
        self._total = total_bytes
        self._started = self._last = time.monotonic()

    def update(self, *, bytes_read: int, sessions: int, rejected: int) -> None:
        self._state = (bytes_read, sessions, rejected)
        if time.monotonic() - self._last >= self._interval:
            self._last = time.monotonic()
            self._print()

    def finish(self) -> None:
        self._print()

    def _print(self) -> None:
        bytes_read, sessions, rejected = self._state
        elapsed = max(time.monotonic() - self._started, 1e-6)
        percent = 100 * bytes_read / self._total if self._total else 100.0
        self._stream.write(
            f"import: {bytes_read / 1e6:,.1f} of {self._total / 1e6:,.1f} MB ({percent:.0f}%), "
            f"{sessions:,} sessions ({sessions / elapsed:,.0f}/s), {rejected:,} rejected\n"
        )
        self._stream.flush()


def progress_for(stream: IO[str]) -> ProgressSink:
    """A bar when ``stream`` is a terminal, plain lines otherwise."""
    if stream.isatty():
        return RichProgress(Console(file=stream))
    return PlainProgress(stream)
