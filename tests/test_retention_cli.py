"""``handoff workspaces set-retention`` and ``handoff prune`` against the test server.

Like the other CLI tests these are synchronous (each command runs its own ``asyncio.run``) and use a database of
their own; the sessions are made through the domain functions in one ``run_with_database`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pymongo.database import Database

from handoff import clock
from handoff.cli import cli, run_with_database
from handoff.config import load_settings
from handoff.sessions import service as sessions
from handoff.sessions.models import SessionStatus
from handoff.sessions.schemas import SessionCreate
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal


@dataclass
class Cli:
    runner: CliRunner
    db: Database[dict[str, Any]]

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli, list(args), prog_name="handoff")


@pytest.fixture
def handoff(cli_db: Database[dict[str, Any]]) -> Cli:
    return Cli(runner=CliRunner(), db=cli_db)


def _ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _workspace_with_sessions(handoff: Cli, *, ended_days_ago: list[int], open_sessions: int = 0) -> str:
    """Workspace ``acme`` with ended sessions of those ages and some active ones; returns its id."""

    async def make() -> str:
        workspace = await workspaces.create_workspace("acme")
        principal = Principal(workspace_id=workspace.workspace_id, api_key_id="key_cli")
        settings = load_settings()
        for _ in range(len(ended_days_ago) + open_sessions):
            await sessions.create_session(principal, SessionCreate(), settings=settings)
        return workspace.workspace_id

    workspace_id = run_with_database(make)
    ids = [doc["session_id"] for doc in handoff.db["sessions"].find({}, {"session_id": 1}).sort("session_id", 1)]
    for session_id, days in zip(ids, ended_days_ago, strict=False):
        ended = clock.now() - timedelta(days=days)
        handoff.db["sessions"].update_one(
            {"session_id": session_id}, {"$set": {"status": SessionStatus.COMPLETED.value, "ended_at": ended}}
        )
    return workspace_id


def test_set_retention_stores_it_and_clear_removes_it(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))

    out = _ok(handoff("workspaces", "set-retention", "acme", "--ended-after-days", "30"))
    assert out == "workspace acme deletes sessions 30 days after they end\n"
    assert handoff.db["workspaces"].find_one({"slug": "acme"})["retention_ended_after_days"] == 30

    out = _ok(handoff("workspaces", "set-retention", "acme", "--clear"))
    assert out == "workspace acme keeps ended sessions\n"
    assert handoff.db["workspaces"].find_one({"slug": "acme"})["retention_ended_after_days"] is None


@pytest.mark.parametrize(
    "args",
    [[], ["--ended-after-days", "3", "--clear"], ["--ended-after-days", "0"]],
    ids=["neither", "both", "zero days"],
)
def test_set_retention_needs_exactly_one_valid_choice(handoff: Cli, args: list[str]) -> None:
    _ok(handoff("workspaces", "create", "acme"))

    result = handoff("workspaces", "set-retention", "acme", *args)

    assert result.exit_code == 2
    assert handoff.db["workspaces"].find_one({"slug": "acme"}).get("retention_ended_after_days") is None


def test_set_retention_of_an_unknown_workspace_is_one_line(handoff: Cli) -> None:
    result = handoff("workspaces", "set-retention", "nobody", "--ended-after-days", "3")

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no workspace 'nobody'"


def test_prune_dry_run_counts_and_deletes_nothing(handoff: Cli) -> None:
    _workspace_with_sessions(handoff, ended_days_ago=[40, 50, 5], open_sessions=1)
    before = (clock.now() - timedelta(days=30)).date().isoformat()

    out = _ok(handoff("prune", "--workspace", "acme", "--ended-before", before, "--dry-run"))

    assert out.splitlines()[0].startswith("2 ended sessions of acme ended before ")
    assert out.splitlines()[-1] == "dry run: nothing deleted"
    assert handoff.db["sessions"].count_documents({}) == 4


def test_prune_counts_then_deletes_the_ended_sessions_before_the_date(handoff: Cli) -> None:
    _workspace_with_sessions(handoff, ended_days_ago=[40, 50, 60, 5], open_sessions=2)
    before = (clock.now() - timedelta(days=30)).date().isoformat()

    out = _ok(handoff("prune", "--workspace", "acme", "--ended-before", before, "--batch-size", "2"))

    assert out.splitlines()[0].startswith("3 ended sessions of acme ended before ")
    assert out.splitlines()[-1] == "deleted 3 sessions"
    left = list(handoff.db["sessions"].find({}, {"status": 1, "ended_at": 1}))
    assert len(left) == 3
    assert sorted(doc["status"] for doc in left) == ["active", "active", "completed"]


def test_prune_with_a_bad_date_is_one_line_and_touches_nothing(handoff: Cli) -> None:
    _workspace_with_sessions(handoff, ended_days_ago=[40])

    result = handoff("prune", "--workspace", "acme", "--ended-before", "last tuesday")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --ended-before must be an ISO 8601 date")
    assert handoff.db["sessions"].count_documents({}) == 1
