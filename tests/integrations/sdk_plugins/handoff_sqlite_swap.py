"""A pytest plugin (``-p handoff_sqlite_swap``) for the Agents SDK's own session tests: SQLiteSession is handoff.

It replaces ``agents.SQLiteSession`` before the SDK's test modules are imported, with a ``HandoffSession`` that
takes SQLiteSession's constructor. Each test gives its sessions a fresh temporary ``db_path``, which is what keeps
one test's ``"test_session"`` apart from another's in SQLite; here that path becomes part of the session's key,
so the same isolation holds on one shared service. The service comes from ``HANDOFF_URL``/``HANDOFF_API_KEY``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import agents
import agents.memory

from handoff.integrations.openai_agents import HandoffSession


class HandoffBackedSQLiteSession(HandoffSession):
    def __init__(
        self,
        session_id: str,
        db_path: str | Path = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: Any = None,
    ) -> None:
        scope = hashlib.sha256(f"{db_path}|{sessions_table}|{messages_table}".encode()).hexdigest()[:12]
        super().__init__(f"{scope}/{session_id}", session_settings=session_settings)
        self.db_path = db_path

    def close(self) -> None:
        """SQLiteSession has a close(); a handoff session holds nothing open between calls."""


def pytest_configure() -> None:
    agents.SQLiteSession = HandoffBackedSQLiteSession  # type: ignore[misc]
    agents.memory.SQLiteSession = HandoffBackedSQLiteSession  # type: ignore[misc]
