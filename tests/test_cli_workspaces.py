"""``handoff workspaces`` and ``handoff keys`` against the test server, checked through a plain PyMongo client.

The CLI runs each command in its own ``asyncio.run``, so these tests are synchronous and never share the
async fixtures' database: each gets a fresh database name, dropped afterwards.
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pymongo.database import Database

from handoff.cli import cli, run_with_database
from handoff.localdb import MongodProcess
from handoff.workspaces import service as workspaces


@dataclass
class Cli:
    """Runs ``handoff ...`` in-process against this test's database."""

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


def _one_line_error(result: Result) -> str:
    """A failed command: exit status 1 and a single ``Error: ...`` line on stderr, no traceback."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


# Workspaces ---------------------------------------------------------------------------------------------------


def test_workspaces_create_stores_the_workspace(handoff: Cli) -> None:
    out = _ok(handoff("workspaces", "create", "acme", "--name", "Acme Inc"))

    stored = handoff.db["workspaces"].find_one({"slug": "acme"})
    assert stored is not None
    assert stored["name"] == "Acme Inc"
    assert out == f"created workspace acme ({stored['workspace_id']})\n"


def test_workspaces_create_duplicate_fails_with_one_line(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))

    line = _one_line_error(handoff("workspaces", "create", "acme"))

    assert "acme" in line
    assert "already exists" in line
    assert handoff.db["workspaces"].count_documents({}) == 1


def test_workspaces_create_with_a_bad_slug_fails_with_one_line(handoff: Cli) -> None:
    line = _one_line_error(handoff("workspaces", "create", "Not A Slug"))

    assert "Not A Slug" in line
    assert handoff.db["workspaces"].count_documents({}) == 0


def test_workspaces_list_shows_every_workspace(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "globex"))
    _ok(handoff("workspaces", "create", "acme", "--name", "Acme Inc"))

    out = _ok(handoff("workspaces", "list"))

    assert out.index("acme") < out.index("globex")
    assert "Acme Inc" in out
    for stored in handoff.db["workspaces"].find({}):
        assert stored["workspace_id"] in out


# Keys ---------------------------------------------------------------------------------------------------------


def test_keys_create_prints_the_key_alone_and_stores_only_its_hash(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))

    out = _ok(handoff("keys", "create", "--workspace", "acme", "--name", "ci"))

    secret = out.removesuffix("\n")
    assert re.fullmatch(r"hk_[A-Za-z0-9_-]{43,}", secret)
    stored = handoff.db["api_keys"].find_one({})
    assert stored is not None
    assert stored["name"] == "ci"
    assert stored["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert stored["prefix"] == secret[:11]
    assert stored["expires_at"] is None
    everything = repr(list(handoff.db["api_keys"].find({})))
    assert secret not in everything
    assert secret[11:] not in everything


def test_key_printed_by_the_cli_opens_its_workspace(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))
    secret = _ok(handoff("keys", "create", "--workspace", "acme")).strip()

    principal = run_with_database(lambda: workspaces.authenticate(secret))

    workspace = handoff.db["workspaces"].find_one({"slug": "acme"})
    assert workspace is not None
    assert principal.workspace_id == workspace["workspace_id"]


def test_keys_create_with_expiry_stores_it(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))
    before = datetime.now(UTC)

    _ok(handoff("keys", "create", "--workspace", "acme", "--expires-in-days", "7"))

    stored = handoff.db["api_keys"].find_one({})
    assert stored is not None
    assert stored["expires_at"] - stored["created_at"] == timedelta(days=7)
    assert before - timedelta(seconds=1) <= stored["created_at"] <= datetime.now(UTC)


def test_keys_create_with_zero_days_is_a_usage_error(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))

    result = handoff("keys", "create", "--workspace", "acme", "--expires-in-days", "0")

    assert result.exit_code == 2
    assert "--expires-in-days" in result.stderr
    assert handoff.db["api_keys"].count_documents({}) == 0


def test_keys_create_for_unknown_workspace_fails_with_one_line(handoff: Cli) -> None:
    line = _one_line_error(handoff("keys", "create", "--workspace", "nope"))

    assert "nope" in line
    assert handoff.db["api_keys"].count_documents({}) == 0


def test_keys_list_shows_ids_and_prefixes_but_never_the_key(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))
    _ok(handoff("workspaces", "create", "globex"))
    first = _ok(handoff("keys", "create", "--workspace", "acme", "--name", "laptop")).strip()
    second = _ok(handoff("keys", "create", "--workspace", "acme", "--name", "ci")).strip()
    other = _ok(handoff("keys", "create", "--workspace", "globex", "--name", "elsewhere")).strip()

    out = _ok(handoff("keys", "list", "--workspace", "acme"))

    for secret, name in [(first, "laptop"), (second, "ci")]:
        stored = handoff.db["api_keys"].find_one({"prefix": secret[:11]})
        assert stored is not None
        assert stored["key_id"] in out
        assert secret[:11] in out
        assert name in out
        assert secret not in out
    assert out.index("laptop") < out.index("ci")
    assert other[:11] not in out
    assert "elsewhere" not in out


def test_keys_list_on_a_narrow_output_shows_whole_ids_to_revoke_with(
    handoff: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped output (``| cat``) is 80 columns or fewer: the id and prefix are never cut to ``key_5003…``."""
    _ok(handoff("workspaces", "create", "acme"))
    secret = _ok(handoff("keys", "create", "--workspace", "acme", "--name", "a rather long key name")).strip()
    stored = handoff.db["api_keys"].find_one({"prefix": secret[:11]})
    assert stored is not None
    monkeypatch.setenv("COLUMNS", "60")

    out = _ok(handoff("keys", "list", "--workspace", "acme"))

    assert max(len(line) for line in out.splitlines()) <= 60
    ids = re.findall(r"key_[0-9a-f]+", out)
    assert ids == [stored["key_id"]], out
    assert f"{secret[:11]}…" in out
    assert _ok(handoff("keys", "revoke", ids[0])) == f"revoked {stored['key_id']} ({secret[:11]}…)\n"
    revoked = handoff.db["api_keys"].find_one({"key_id": stored["key_id"]})
    assert revoked is not None
    assert revoked["revoked_at"] is not None


def test_keys_list_too_narrow_for_the_id_runs_past_the_width_rather_than_cut_it(
    handoff: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ok(handoff("workspaces", "create", "acme"))
    secret = _ok(handoff("keys", "create", "--workspace", "acme")).strip()
    stored = handoff.db["api_keys"].find_one({})
    assert stored is not None
    monkeypatch.setenv("COLUMNS", "30")

    out = _ok(handoff("keys", "list", "--workspace", "acme"))

    assert re.findall(r"key_[0-9a-f]+", out) == [stored["key_id"]], out
    assert f"{secret[:11]}…" in out


def test_keys_list_for_unknown_workspace_fails_with_one_line(handoff: Cli) -> None:
    assert "nope" in _one_line_error(handoff("keys", "list", "--workspace", "nope"))


def test_keys_revoke_marks_the_key_revoked(handoff: Cli) -> None:
    _ok(handoff("workspaces", "create", "acme"))
    secret = _ok(handoff("keys", "create", "--workspace", "acme")).strip()
    stored = handoff.db["api_keys"].find_one({})
    assert stored is not None

    out = _ok(handoff("keys", "revoke", stored["key_id"]))

    assert out == f"revoked {stored['key_id']} ({secret[:11]}…)\n"
    revoked = handoff.db["api_keys"].find_one({"key_id": stored["key_id"]})
    assert revoked is not None
    assert isinstance(revoked["revoked_at"], datetime)
    listed = _ok(handoff("keys", "list", "--workspace", "acme"))
    assert revoked["revoked_at"].isoformat(timespec="seconds") in listed


def test_keys_revoke_unknown_key_fails_with_one_line(handoff: Cli) -> None:
    assert "key_nope" in _one_line_error(handoff("keys", "revoke", "key_nope"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.usefixtures("collect_pymongo_leaked_socket")
def test_unreachable_database_fails_with_one_line(handoff: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_MONGODB_URL", f"mongodb://127.0.0.1:{_free_port()}/?directConnection=true")
    monkeypatch.setenv("HANDOFF_SERVER_SELECTION_TIMEOUT_MS", "200")

    result = handoff("workspaces", "list")
    exit_code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    del result  # its exc_info keeps the finished event loop, and any socket it leaked, alive

    assert exit_code == 1
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("Error: ")
    assert "HANDOFF_MONGODB_URL" in stderr or "database" in stderr.lower()


# Settings errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["workspaces", "list"],
        ["workspaces", "create", "acme"],
        ["keys", "create", "--workspace", "acme"],
        ["keys", "list", "--workspace", "acme"],
        ["keys", "revoke", "key_1"],
        ["serve"],
    ],
    ids=" ".join,
)
def test_bad_setting_fails_with_one_line_naming_the_variable(
    handoff: Cli, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("HANDOFF_MAX_BODY_BYTES", "lots")

    line = _one_line_error(handoff(*command))

    assert line.startswith("Error: HANDOFF_MAX_BODY_BYTES: ")
    assert handoff.db.name not in handoff.db.client.list_database_names()


def test_bad_setting_in_a_real_process_prints_one_line_and_no_traceback(
    mongod: MongodProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDOFF_MONGODB_URL", mongod.url)
    monkeypatch.setenv("HANDOFF_LOG_LEVEL", "CHATTY")

    done = subprocess.run(
        [sys.executable, "-m", "handoff.cli", "workspaces", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("Error: HANDOFF_LOG_LEVEL: ")
    assert len(done.stderr.strip().splitlines()) == 1
