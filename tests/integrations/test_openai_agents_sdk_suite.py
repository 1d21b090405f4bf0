"""The Agents SDK's own session tests, unchanged, with SQLiteSession swapped for HandoffSession.

The test files come from the SDK's sdist on PyPI at test time (the installed version, cached under
``~/.cache/handoff-tests``; never committed), run by pytest in a subprocess from the sdist's root (its
``tests`` package and its pytest settings), with ``-p handoff_sqlite_swap`` against a live ``handoff serve``.
Deselected: the tests of SQLite's own internals (connections, threads, file locks, rollbacks, corrupt rows
written with raw SQL); the list is ``DESELECTED`` below and in the README.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

from tests.live_service import LiveService

CACHE = Path(os.environ.get("HANDOFF_TEST_CACHE", Path.home() / ".cache" / "handoff-tests"))
PLUGINS = Path(__file__).parent / "sdk_plugins"
FILES = ["tests/memory/test_session.py", "tests/memory/test_session_limit.py"]

# Tests of SQLiteSession's internals: they open its sqlite3 connections or file, or need its threads and locks.
DESELECTED = [
    "test_sqlite_session_close_closes_worker_thread_connections",
    "test_sqlite_session_reaps_connections_from_exited_worker_threads",
    "test_sqlite_session_closes_retired_connections_before_the_next_allocation",
    "test_sqlite_session_keeps_connections_of_live_worker_threads",
    "test_sqlite_session_closed_rejects_empty_add_items",
    "test_sqlite_session_pop_item_skips_corrupt_most_recent",
    "test_sqlite_session_pop_item_returns_none_after_dropping_only_corrupt_rows",
    "test_sqlite_session_get_items_limit_skips_corrupt_newest_rows",
    "test_sqlite_session_get_items_session_settings_limit_skips_corrupt_rows",
    "test_sqlite_session_file_lock_is_shared_across_instances",
    "test_sqlite_session_failed_add_items_releases_write_lock",
    "test_sqlite_session_failed_clear_session_rolls_back",
    "test_await_mutation_cancellation_hides_later_failure_without_loop_error",
    "test_sqlite_session_failed_pop_item_releases_write_lock",
    "test_sqlite_session_rollback_failure_evicts_connection",
    "test_sqlite_session_close_retries_quarantined_connection",
    *(
        f"test_sqlite_session_post_commit_cancellation_propagates_after_known_outcome[{op}]"
        for op in ("add", "pop", "clear")
    ),
]


def _sdk_sources() -> Path:
    """The unpacked sdist of the installed openai-agents, downloaded once."""
    pinned = version("openai-agents")
    root = CACHE / f"openai_agents-{pinned}"
    if (root / FILES[0]).exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"),
            *("-d", str(CACHE), f"openai-agents=={pinned}"),
        ],
        check=True,
    )
    with tarfile.open(CACHE / f"openai_agents-{pinned}.tar.gz") as archive:
        archive.extractall(CACHE, filter="data")
    return root


def test_sdk_session_tests_pass_on_handoff(live_service: LiveService) -> None:
    root = _sdk_sources()
    argv = [sys.executable, "-m", "pytest", *FILES, "-p", "handoff_sqlite_swap", "-q", "-p", "no:cacheprovider"]
    argv += [arg for name in DESELECTED for arg in ("--deselect", f"{FILES[0]}::{name}")]
    env = {**os.environ, **live_service.env, "PYTHONPATH": str(PLUGINS)}
    run = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert "52 passed" in summary, summary
    assert "failed" not in summary, summary
