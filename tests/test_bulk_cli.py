"""``handoff import`` and ``handoff export`` against the test server, checked through a plain PyMongo client.

The CLI runs each command in its own ``asyncio.run``, so these tests are synchronous and use a fresh database
of their own (see ``test_cli_workspaces``). The contract checked here is the command line's: the summary line
on stdout, exit statuses 0/3/2, one line and no traceback when a file cannot be read, the rejects file's
default place, progress on stderr.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pymongo.database import Database

from handoff.cli import cli
from handoff.localdb import MongodProcess

LARAVEL = Path(__file__).parent / "data" / "laravel_agent_sessions.json"


@dataclass
class Cli:
    """Runs ``handoff ...`` in-process against this test's database."""

    runner: CliRunner
    db: Database[dict[str, Any]]

    def __call__(self, *args: str | Path) -> Result:
        return self.runner.invoke(cli, [str(arg) for arg in args], prog_name="handoff")

    def workspace_id(self, slug: str) -> str:
        workspace = self.db["workspaces"].find_one({"slug": slug})
        assert workspace is not None
        return str(workspace["workspace_id"])


@pytest.fixture
def handoff(cli_db: Database[dict[str, Any]]) -> Cli:
    runner = Cli(runner=CliRunner(), db=cli_db)
    assert runner("workspaces", "create", "acme").exit_code == 0
    return runner


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    """The Laravel fixture, copied where its default rejects file may be written."""
    path = tmp_path / "dump.json"
    shutil.copy(LARAVEL, path)
    return path


def _last_line(result: Result) -> str:
    return result.stdout.splitlines()[-1]


def _one_line_error(result: Result, status: int) -> str:
    assert result.exit_code == status, (result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


def _lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


# Import -----------------------------------------------------------------------------------------------------


def test_import_prints_the_summary_last_and_exits_0(handoff: Cli, dump: Path) -> None:
    result = handoff("import", dump, "--workspace", "acme")

    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 4, skipped 0, rejected 0\n"
    assert "import: " in result.stderr  # plain progress lines: stderr is not a terminal here
    assert "4 sessions" in result.stderr
    docs = list(handoff.db["sessions"].find({}, {"_id": 0, "session_id": 1, "legacy": 1, "workspace_id": 1}))
    assert sorted(doc["legacy"]["id"] for doc in docs) == [101, 102, 103, 104]
    assert {doc["workspace_id"] for doc in docs} == {handoff.workspace_id("acme")}
    assert not Path(f"{dump}.rejects.jsonl").exists()


def test_import_twice_skips_everything(handoff: Cli, dump: Path) -> None:
    handoff("import", dump, "--workspace", "acme")
    before = list(handoff.db["sessions"].find({}))

    result = handoff("import", dump, "--workspace", "acme", "--format", "laravel", "--batch-size", "1")

    assert (result.exit_code, _last_line(result)) == (0, "imported 0, skipped 4, rejected 0")
    assert list(handoff.db["sessions"].find({})) == before


def test_import_replace_overwrites(handoff: Cli, tmp_path: Path) -> None:
    path = _lines(tmp_path / "in.jsonl", [{"session_id": "a", "status": "active", "started_at": "2026-01-01 10:00:00"}])
    handoff("import", path, "--workspace", "acme")
    _lines(path, [{"session_id": "a", "status": "failed", "started_at": "2026-01-01 10:00:00"}])

    result = handoff("import", path, "--workspace", "acme", "--on-conflict", "replace")

    assert (result.exit_code, _last_line(result)) == (0, "imported 1, skipped 0, rejected 0")
    stored = handoff.db["sessions"].find_one({"session_id": "a"})
    assert stored is not None
    assert stored["status"] == "failed"


def test_import_with_rejected_rows_exits_3_and_writes_them_beside_the_first_file(handoff: Cli, tmp_path: Path) -> None:
    good = {"session_id": "a", "status": "active", "started_at": "2026-01-01 10:00:00"}
    path = _lines(tmp_path / "in.jsonl", [good, "{nope", {**good, "session_id": "b", "status": "lost"}])

    result = handoff("import", path, "--workspace", "acme")

    assert result.exit_code == 3, result.output
    assert _last_line(result) == "imported 1, skipped 0, rejected 2"
    assert f"rejected rows written to {path}.rejects.jsonl" in result.stderr
    rejects = [json.loads(line) for line in Path(f"{path}.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in rejects] == [
        (2, "{nope"),
        (3, json.dumps({**good, "session_id": "b", "status": "lost"})),
    ]
    assert "unknown status 'lost'" in rejects[1]["error"]
    assert [doc["session_id"] for doc in handoff.db["sessions"].find({})] == ["a"]


def test_fixed_file_imports_clean_and_its_old_rejects_file_goes(handoff: Cli, tmp_path: Path) -> None:
    good = {"session_id": "a", "status": "active", "started_at": "2026-01-01 10:00:00"}
    path = _lines(tmp_path / "in.jsonl", [good, {**good, "session_id": "b", "status": "lost"}])
    assert handoff("import", path, "--workspace", "acme").exit_code == 3
    _lines(path, [good, {**good, "session_id": "b"}])

    result = handoff("import", path, "--workspace", "acme")

    assert (result.exit_code, _last_line(result)) == (0, "imported 1, skipped 1, rejected 0")
    assert not Path(f"{path}.rejects.jsonl").exists()


def test_import_rejects_option_chooses_the_file(handoff: Cli, tmp_path: Path) -> None:
    path = _lines(tmp_path / "in.jsonl", ['"just a string"'])

    result = handoff("import", path, "--workspace", "acme", "--rejects", tmp_path / "bad.jsonl")

    assert result.exit_code == 3
    assert json.loads((tmp_path / "bad.jsonl").read_text())["line"] == 1


def test_import_plan_map_sets_plans_and_warns_about_unknown_slugs(handoff: Cli, dump: Path, tmp_path: Path) -> None:
    plan_map = tmp_path / "plans.json"
    plan_map.write_text(json.dumps({"12": "auth-rewrite"}))

    result = handoff("import", dump, "--workspace", "acme", "--plan-map", plan_map)

    assert result.exit_code == 0, result.output
    assert "warning: plan 'auth-rewrite' of the plan map does not exist in workspace 'acme'" in result.stderr
    plans = {doc["session_id"]: doc["plan"] for doc in handoff.db["sessions"].find({})}
    assert plans["sess_20250301_auth"] == plans["sess_20250302_billing"] == "auth-rewrite"
    assert plans["sess_20250304_failed"] is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.json", "missing.json: No such file or directory"),
        (lambda tmp: tmp, "Is a directory"),
    ],
    ids=["missing", "directory"],
)
def test_import_of_a_file_that_cannot_be_read_exits_2_with_one_line(
    handoff: Cli, dump: Path, tmp_path: Path, make: Any, message: str
) -> None:
    line = _one_line_error(handoff("import", dump, make(tmp_path), "--workspace", "acme"), 2)

    assert message in line
    assert handoff.db["sessions"].count_documents({}) == 0


def test_import_with_an_unreadable_plan_map_exits_2(handoff: Cli, dump: Path, tmp_path: Path) -> None:
    plan_map = tmp_path / "plans.json"
    plan_map.write_text("[1, 2]")

    line = _one_line_error(handoff("import", dump, "--workspace", "acme", "--plan-map", plan_map), 2)

    assert "cannot read plan map" in line


def test_import_into_an_unknown_workspace_fails_with_one_line(handoff: Cli, dump: Path) -> None:
    line = _one_line_error(handoff("import", dump, "--workspace", "nope"), 1)

    assert "nope" in line


def test_import_in_a_real_process_exits_3_and_ends_with_the_summary(
    handoff: Cli, mongod: MongodProcess, tmp_path: Path
) -> None:
    path = _lines(tmp_path / "in.jsonl", ["oops", {"session_id": "a", "status": "paused", "started_at": "2026-01-01"}])

    done = subprocess.run(
        [sys.executable, "-m", "handoff.cli", "import", str(path), "--workspace", "acme"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    missing = subprocess.run(
        [sys.executable, "-m", "handoff.cli", "import", str(tmp_path / "nope.jsonl"), "--workspace", "acme"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (done.returncode, done.stdout.splitlines()[-1]) == (3, "imported 1, skipped 0, rejected 1"), done.stderr
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.strip().splitlines() == [
        f"Error: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    ]


# Export -----------------------------------------------------------------------------------------------------


def test_export_writes_json_lines_to_stdout_or_a_file(handoff: Cli, dump: Path, tmp_path: Path) -> None:
    handoff("import", dump, "--workspace", "acme")

    to_stdout = handoff("export", "--workspace", "acme")
    to_file = handoff("export", "--workspace", "acme", "--output", tmp_path / "out.jsonl")
    completed = handoff("export", "--status", "completed", "-o", "-")

    assert (to_stdout.exit_code, to_file.exit_code) == (0, 0)
    assert to_stdout.stderr == "exported 4 sessions\n"
    assert (tmp_path / "out.jsonl").read_text() == to_stdout.stdout
    lines = [json.loads(line) for line in to_stdout.stdout.splitlines()]
    assert [line["session_id"] for line in lines] == sorted(line["session_id"] for line in lines)
    first = next(line for line in lines if line["session_id"] == "sess_20250301_auth")
    assert (first["duration"], first["action_count"], len(first["work_log"]), len(first["artifacts"])) == (
        "2h 5m",
        6,
        6,
        2,
    )
    assert first["work_log"][0]["timestamp"] == "2025-03-01T09:05:00.000000+00:00"
    assert [json.loads(line)["session_id"] for line in completed.stdout.splitlines()] == ["sess_20250301_auth"]


def test_export_then_import_elsewhere_then_export_gives_the_same_lines(
    handoff: Cli, dump: Path, tmp_path: Path
) -> None:
    handoff("import", dump, "--workspace", "acme")
    handoff("export", "--workspace", "acme", "--output", tmp_path / "acme.jsonl")
    assert handoff("workspaces", "create", "globex").exit_code == 0

    result = handoff("import", tmp_path / "acme.jsonl", "--workspace", "globex")
    again = handoff("export", "--workspace", "globex")

    assert (result.exit_code, _last_line(result)) == (0, "imported 4, skipped 0, rejected 0")
    first = (tmp_path / "acme.jsonl").read_text().replace(handoff.workspace_id("acme"), handoff.workspace_id("globex"))
    assert sorted(again.stdout.splitlines()) == sorted(first.splitlines())


def test_export_of_an_unknown_workspace_fails_with_one_line_and_writes_no_file(handoff: Cli, tmp_path: Path) -> None:
    line = _one_line_error(handoff("export", "--workspace", "nope", "--output", tmp_path / "out.jsonl"), 1)

    assert "nope" in line
    assert not (tmp_path / "out.jsonl").exists()
