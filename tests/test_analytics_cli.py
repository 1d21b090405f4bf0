"""``handoff stats`` against the test server: the same figures as the API, as tables.

Synchronous like ``test_cli_workspaces``: the CLI runs its own ``asyncio.run`` on a fresh database of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pymongo.database import Database

from handoff.cli import cli

DAY0 = datetime(2026, 1, 10, tzinfo=UTC)


def _stats(*args: str) -> Result:
    return CliRunner().invoke(cli, ["stats", *args], prog_name="handoff")


def _session(ws: str, n: int, agent: str, *, status: str, started: datetime, minutes: int | None) -> dict[str, Any]:
    ended = started + timedelta(minutes=minutes) if minutes is not None else None
    return {
        "workspace_id": ws, "session_id": f"s{n}", "agent_type": agent, "status": status,
        "started_at": started, "last_active_at": ended or started, "ended_at": ended, "duration_minutes": minutes,
        "action_count": 4, "error_count": int(status == "failed"), "checkpoint_count": 1, "artifact_count": 2,
        "work_log": [], "artifacts": [],
    }  # fmt: skip


def _seed(cli_db: Database[dict[str, Any]]) -> None:
    cli_db["workspaces"].insert_many(
        [
            {"workspace_id": "ws_a", "slug": "acme", "name": "Acme", "created_at": DAY0},
            {"workspace_id": "ws_b", "slug": "globex", "name": "Globex", "created_at": DAY0},
        ]
    )
    cli_db["sessions"].insert_many(
        [
            _session("ws_a", 1, "claude", status="completed", started=DAY0, minutes=10),
            _session("ws_a", 2, "claude", status="failed", started=DAY0 + timedelta(days=1), minutes=20),
            _session("ws_a", 3, "codex", status="active", started=DAY0 + timedelta(days=2), minutes=None),
            _session("ws_b", 4, "intruder", status="completed", started=DAY0, minutes=999),
        ]
    )


def test_stats_prints_summary_and_agents_of_one_workspace(cli_db: Database[dict[str, Any]]) -> None:
    _seed(cli_db)
    result = _stats("--workspace", "acme")
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert "acme: all sessions" in out
    assert "globex" not in out
    assert "intruder" not in out
    lines = {" ".join(line.replace("│", " ").split()) for line in out.splitlines()}
    for row in (
        "sessions 3", "completed 1", "failed 1", "active 1", "agent claude 2", "duration avg (min) 15.00",
        "duration p50 (min) 10", "duration p95 (min) 20", "actions 12", "errors 1", "artifacts 6",
        "claude 2 1 1 50% 15.00 4.00 1", "codex 1 0 0 0% 0.00 4.00 0",
    ):  # fmt: skip
        assert row in lines, (row, out)


def test_stats_since_and_every_workspace(cli_db: Database[dict[str, Any]]) -> None:
    _seed(cli_db)
    result = _stats("--since", "2026-01-11")
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert "acme: sessions started since 2026-01-11T00:00:00+00:00" in out
    assert "globex: sessions started since" in out
    lines = {" ".join(line.replace("│", " ").split()) for line in out.splitlines()}
    assert "sessions 2" in lines  # acme: s2 and s3
    assert "sessions 0" in lines  # globex: its one session started before


@pytest.mark.parametrize(("args", "message"), [(["--since", "someday"], "since"), (["--workspace", "nope"], "nope")])
def test_stats_bad_input_is_one_line_error(cli_db: Database[dict[str, Any]], args: list[str], message: str) -> None:
    result = _stats(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
