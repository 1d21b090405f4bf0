"""``handoff claims list`` against the test server: the claims of a workspace or of all, their state as derived
now, as a table or JSON Lines.

Synchronous like ``test_analytics_cli``: the CLI runs its own ``asyncio.run`` on a fresh database of its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner, Result
from pymongo.database import Database

from handoff.cli import cli

NOW = datetime.now(UTC)


def _claims(*args: str) -> Result:
    return CliRunner().invoke(cli, ["claims", "list", *args], prog_name="handoff")


def _claim(ws: str, n: int, *, minutes_ago: int, lease: int = 300, ended: str | None = None) -> dict[str, Any]:
    at = NOW - timedelta(minutes=minutes_ago)
    return {
        "claim_id": f"clm_{n}", "workspace_id": ws, "handoff_session_id": f"h{n}", "session_id": f"r{n}",
        "agent_type": "coder", "claimed_at": at, "renewed_at": at, "lease_seconds": lease, "holds": ended is None,
        "ended_state": ended, "ended_at": at + timedelta(minutes=1) if ended else None, "reason": None,
    }  # fmt: skip


def _seed(cli_db: Database[dict[str, Any]]) -> None:
    cli_db["workspaces"].insert_many(
        [
            {"workspace_id": "ws_a", "slug": "acme", "name": "Acme", "created_at": NOW},
            {"workspace_id": "ws_b", "slug": "globex", "name": "Globex", "created_at": NOW},
        ]
    )
    cli_db["claims"].insert_many(
        [
            _claim("ws_a", 1, minutes_ago=30, ended="released"),
            _claim("ws_a", 2, minutes_ago=20),  # its lease (5 min) ran out: expired, though nobody ended it
            _claim("ws_a", 3, minutes_ago=1, lease=3600),
            _claim("ws_b", 4, minutes_ago=5, ended="completed"),
        ]
    )


def test_claims_list_shows_every_workspaces_claims_newest_first(cli_db: Database[dict[str, Any]]) -> None:
    _seed(cli_db)
    result = _claims()
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "clm_" in line]
    assert [line.split()[1] for line in lines] == ["acme", "acme", "acme", "globex"]
    assert [next(word for word in line.split() if word.startswith("clm_")) for line in lines] == [
        "clm_3",
        "clm_2",
        "clm_1",
        "clm_4",
    ]
    assert all(state in line for line, state in zip(lines, ["active", "expired", "released", "completed"], strict=True))


def test_claims_list_filters_by_workspace_and_state_and_speaks_json(cli_db: Database[dict[str, Any]]) -> None:
    _seed(cli_db)
    result = _claims("--workspace", "acme", "--state", "expired", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(row["workspace"], row["claim_id"], row["state"]) for row in rows] == [("acme", "clm_2", "expired")]
    assert set(rows[0]) == {
        "workspace", "claim_id", "handoff_session_id", "session_id", "agent_type", "state", "claimed_at",
        "lease_expires_at", "ended_at",
    }  # fmt: skip
    assert _claims("--workspace", "globex", "--state", "active").output.strip() == "no claims"
    unknown = _claims("--workspace", "nope")
    assert unknown.exit_code == 1
    assert "nope" in unknown.output
    assert _claims("--state", "lost").exit_code == 2
