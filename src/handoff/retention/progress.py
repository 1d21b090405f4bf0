"""How ``handoff prune`` shows its progress: a rich bar on a terminal (as ``handoff import`` does), else nothing
until its summary line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def prune_progress(stream: IO[str], *, total: int) -> Iterator[Callable[[int], None]]:
    """A callback for :func:`handoff.retention.service.prune` that moves a bar to the sessions deleted so far."""
    if not stream.isatty():
        yield lambda _deleted: None
        return
    with Progress(
        TextColumn("pruning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=Console(file=stream)
    ) as progress:
        task = progress.add_task("prune", total=total)
        yield lambda deleted: progress.update(task, completed=deleted)
