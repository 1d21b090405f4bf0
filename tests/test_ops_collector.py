"""The collector of a served worker: frozen after the app is built, young collections past what is in flight."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from litestar import Litestar

from handoff.config import Settings
from handoff.ops import collector
from handoff.ops.server import worker_app


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """The test process's collector as it was (a frozen object is never collected: unfrozen again)."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_a_worker_app_is_served_with_the_collector_settled() -> None:
    gc.unfreeze()
    app = worker_app(Settings(mongodb_url="mongodb://127.0.0.1:1"))  # built, not started: nothing connects
    assert isinstance(app, Litestar)
    assert gc.get_freeze_count() > 0  # what the app is made of is out of the collector's walks
    assert gc.get_threshold()[0] == collector.GEN0_THRESHOLD
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle made after the freeze is still collected
    del garbage
    assert gc.collect() > 0
