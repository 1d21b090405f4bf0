"""How the CLI's long commands that count things (``handoff migrate``, ``handoff prune``) show their progress: a
rich bar on a terminal, nothing but their summary line otherwise (``handoff import`` has its own, richer one in
``handoff.bulk.progress``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def counting(stream: IO[str], label: str, *, total: int) -> Iterator[Callable[[int], None]]:
    """A callback that moves a bar of ``total`` things to how many are done so far."""
    if not stream.isatty():
        yield lambda _done: None
        return
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=Console(file=stream)
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)
