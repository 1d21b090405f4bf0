"""Claude Agent SDK transcripts kept in handoff: ``HandoffSessionStore``, a ``SessionStore``.

Layout. Every transcript (a ``SessionKey``: ``project_key``, ``session_id``, optional ``subpath``) is one handoff
session, got-or-created by an ``external_id`` derived from the whole key. A main transcript's ``agent_type`` is
``claude-agent-sdk:<project_key>``, a subagent transcript's ``claude-agent-sdk-subagents:<hash of its parent>``,
so ``list_sessions``/``list_session_summaries`` (one project) and ``list_subkeys`` (one session) are the
service's own indexed listing by agent type, never a scan of the workspace. The key itself is in the session's
context (``claude_agent_sdk``) and is checked on every listed session, so a hash can never mix two keys.

Lines. Each transcript line is one work-log entry whose ``message`` is what a person reads (``user: fix the
login bug``, ``assistant: tool Read``), its JSON text in ``data.line`` (JSON text, not a BSON object: entries
are opaque, and this keeps integers past 64 bits, key order and ``$``/``.`` keys as the SDK wrote them). A
line too large for an entry (``data`` is capped at 64 KiB) goes to a blob of the session, the entry pointing
at it. A line's ``uuid`` is its entry id (``t.<uuid>``, hashed when it does not fit the id alphabet), so a
re-sent batch stores each line once; lines without one get a fresh id and are stored as sent.

Summaries. ``fold_session_summary`` runs inside ``append`` for main transcripts. Version ``n`` of the summary
is claimed by a ``checkpoint`` entry ``summary.<n>`` appended in the SAME atomic batch as the lines it folds
(the last batch, when a large append needs several): entry ids are unique in a session, so two processes that
fold from the same version cannot both win; the loser's batch is refused whole (422), it re-reads the newest
claim, folds again and re-sends (its lines, already stored or not, keep their ids). The newest summary is then
copied into the session's context (``claude_summary``) for the listing. That copy is current exactly when its
version equals the session's ``checkpoint_count``; a copy left behind (a writer that died between its batch
and its copy, or two copies landing out of order) is left out of ``list_session_summaries``, so the SDK
re-folds that session from ``load`` instead of trusting a stale summary, and the next append repairs it.
Times (``mtime``) are the session's ``last_active_at``: set by the service on every write, one clock for both
listings.

The SDK may call a store from more than one event loop, so unless a ``client=`` is given each call opens a
client of its own on the calling loop (as :mod:`handoff.integrations.openai_agents` does).
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from claude_agent_sdk import fold_session_summary
from claude_agent_sdk.types import (
    SessionKey,
    SessionListSubkeysKey,
    SessionStore,
    SessionStoreEntry,
    SessionStoreListEntry,
    SessionSummaryEntry,
)

from handoff.client import AsyncHandoffClient, Invalid, NotFound
from handoff.integrations import _entries
from handoff.sessions.schemas import SessionRead, TypedEntry

FRAMEWORK = "claude-agent-sdk"
KEY_CONTEXT = "claude_agent_sdk"
SUMMARY_CONTEXT = "claude_summary"
LINE_PREFIX = "t."
SUMMARY_PREFIX = "summary."
INLINE_BYTES = 60_000  # a line's JSON text kept in its entry up to this; above it, a blob (data is capped at 64 KiB)
HEADLINE_CHARS = 200
LISTING_PAGE = 200  # the session listing's largest page

EntryType = Literal["info", "error"]
Json = dict[str, Any]


def headline(line: dict[str, Any]) -> tuple[EntryType, str]:
    """The entry type and message of a transcript line, as a person reads it in handoff."""
    kind = str(line.get("type", "entry"))
    failed = line.get("isApiErrorMessage") is True or line.get("level") == "error"
    message = line.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    words: list[str] = []
    if isinstance(content, str):
        words.append(content)
    elif isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                words.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                words.append(f"tool {block.get('name', '?')}")
            elif block.get("type") == "tool_result":
                failed = failed or block.get("is_error") is True
                words.append("tool result")
    text = " ".join(" ".join(words).split())
    return ("error" if failed else "info"), (f"{kind}: {text}" if text else kind)[:HEADLINE_CHARS]


@dataclass(frozen=True, slots=True)
class _Summary:
    """A summary version as claimed in the log (``data`` is the SDK's opaque state)."""

    version: int
    data: dict[str, Any]


def _ms(session: SessionRead) -> int:
    return int(session.last_active_at.timestamp() * 1000)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class HandoffSessionStore(SessionStore):
    """A Claude Agent SDK ``SessionStore`` in handoff: ``ClaudeAgentOptions(session_store=HandoffSessionStore())``.

    ``base_url``/``api_key`` default to ``HANDOFF_URL``/``HANDOFF_API_KEY``; or pass a ready ``client``.
    ``prefix`` keeps the transcripts of stores with different prefixes apart inside one workspace (as the SDK's
    own Redis and Postgres examples do with theirs).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: AsyncHandoffClient | None = None,
        prefix: str = "",
    ) -> None:
        self._base_url, self._api_key, self._given = base_url, api_key, client
        self.prefix = prefix
        self._ids: dict[str, str] = {}  # external_id -> handoff session_id, for keys this store has seen
        self._summaries: dict[str, _Summary] = {}  # handoff session_id -> the summary version this store wrote

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[AsyncHandoffClient]:
        if self._given is not None:
            yield self._given
            return
        async with AsyncHandoffClient(self._base_url, self._api_key) as client:
            yield client

    # Addressing --------------------------------------------------------------------------------------------

    def _stored_key(self, project_key: str, session_id: str, subpath: str | None = None) -> dict[str, str]:
        key = {"prefix": self.prefix, "project_key": project_key, "session_id": session_id}
        if subpath:
            key["subpath"] = subpath
        return key

    def _external_id(self, key: SessionKey) -> str:
        stored = self._stored_key(key["project_key"], key["session_id"], key.get("subpath"))
        return _entries.external_id(FRAMEWORK, _json(list(stored.values())))

    def _project_type(self, project_key: str) -> str:
        scope = f"{self.prefix}/{project_key}" if self.prefix else project_key
        candidate = f"{FRAMEWORK}:{scope}"
        return candidate if len(candidate) <= 255 else f"{FRAMEWORK}:sha256:{_entries.digest(_json([scope]), 64)}"

    def _subagents_type(self, project_key: str, session_id: str) -> str:
        return f"{FRAMEWORK}-subagents:{_entries.digest(_json([self.prefix, project_key, session_id]), 40)}"

    def _agent_type(self, key: SessionKey) -> str:
        if key.get("subpath"):
            return self._subagents_type(key["project_key"], key["session_id"])
        return self._project_type(key["project_key"])

    async def _session(self, client: AsyncHandoffClient, key: SessionKey, *, create: bool) -> str | None:
        """The handoff session of a transcript (created when ``create``), or None when it was never written."""
        external_id = self._external_id(key)
        if external_id in self._ids:
            return self._ids[external_id]
        if create:
            context = {KEY_CONTEXT: self._stored_key(key["project_key"], key["session_id"], key.get("subpath"))}
            session = await client.create_session(
                agent_type=self._agent_type(key), external_id=external_id, context_summary=context
            )
        else:
            page = await client.list_sessions(external_id=external_id, limit=1)
            if not page.items:
                return None
            session = page.items[0]
        self._ids[external_id] = session.session_id
        return session.session_id

    def _forget(self, key: SessionKey, session_id: str | None) -> None:
        self._ids.pop(self._external_id(key), None)
        if session_id is not None:
            self._summaries.pop(session_id, None)

    async def _listed(self, client: AsyncHandoffClient, agent_type: str) -> AsyncIterator[tuple[SessionRead, Json]]:
        """The sessions of one agent type with their stored keys, page by page (keys of this prefix only)."""
        cursor: str | None = None
        while True:
            page = await client.list_sessions(agent_type=agent_type, limit=LISTING_PAGE, cursor=cursor)
            for session in page.items:
                stored = (session.context_summary or {}).get(KEY_CONTEXT)
                if isinstance(stored, dict) and stored.get("prefix", "") == self.prefix:
                    yield session, stored
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # Lines -------------------------------------------------------------------------------------------------

    async def _line_entry(self, client: AsyncHandoffClient, session_id: str, line: SessionStoreEntry) -> Json | None:
        """The work-log entry of one line; None for a large line already stored (it is never uploaded twice)."""
        given = line.get("uuid")
        entry_id = LINE_PREFIX + (_entries.safe_token(given, 60) if given else uuid.uuid4().hex)
        kind, message = headline(dict(line))
        text = _json(line)
        if len(_json(text).encode()) <= INLINE_BYTES:
            return {"id": entry_id, "type": kind, "message": message, "data": {"line": text}}
        if given:
            with contextlib.suppress(NotFound):
                await client.get_work_log_entry(session_id, entry_id)
                return None
        blob = await client.upload_blob(session_id, text.encode(), content_type="application/json")
        return {"id": entry_id, "type": kind, "message": message, "data": {"bytes": blob.size}, "blob_id": blob.blob_id}

    async def _line(self, client: AsyncHandoffClient, session_id: str, entry: TypedEntry) -> SessionStoreEntry:
        if entry.blob_id is None:
            line: SessionStoreEntry = json.loads(entry.data["line"])
            return line
        buffer = io.BytesIO()
        await client.download_blob(session_id, entry.blob_id, to=buffer)
        stored: SessionStoreEntry = json.loads(buffer.getvalue())
        return stored

    # Summaries ---------------------------------------------------------------------------------------------

    async def _latest_summary(self, client: AsyncHandoffClient, session_id: str) -> _Summary | None:
        """The newest claimed summary version: one descending index read of the ``summary.`` ids."""
        page = await client.get_work_log(session_id, id_prefix=SUMMARY_PREFIX, order="desc", limit=1)
        for entry in page.items:
            if isinstance(entry, TypedEntry):
                return _Summary(version=int(entry.data["version"]), data=json.loads(entry.data["summary"]))
        return None

    def _claim(self, key: SessionKey, prev: _Summary | None, lines: list[SessionStoreEntry]) -> tuple[_Summary, Json]:
        before: SessionSummaryEntry | None = None
        if prev is not None:
            before = {"session_id": key["session_id"], "mtime": 0, "data": prev.data}
        folded = fold_session_summary(before, key, lines)
        summary = _Summary(version=(prev.version if prev else 0) + 1, data=folded["data"])
        entry = {
            "id": f"{SUMMARY_PREFIX}{summary.version:09d}",
            "type": "checkpoint",
            "message": f"transcript mirrored: {len(lines)} more line(s), summary version {summary.version}",
            "data": {"version": summary.version, "summary": _json(summary.data)},
        }
        return summary, entry

    async def _append_with_summary(
        self,
        client: AsyncHandoffClient,
        session_id: str,
        key: SessionKey,
        lines: list[SessionStoreEntry],
        items: list[Json],
    ) -> None:
        prev = self._summaries.get(session_id) or await self._latest_summary(client, session_id)
        while True:
            summary, claim = self._claim(key, prev, lines)
            try:
                await _entries.append_in_batches(client, session_id, [*items, claim])
                break
            except Invalid:
                # Refused whole: another writer claimed this version first (else it is a real 422: raise it).
                latest = await self._latest_summary(client, session_id)
                if latest is None or latest.version < summary.version:
                    raise
                prev = latest
        await client.update_context(session_id, {SUMMARY_CONTEXT: claim["data"]})
        self._summaries[session_id] = summary

    # SessionStore ------------------------------------------------------------------------------------------

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        """Store a batch of lines in order; a line's ``uuid`` makes a re-sent one a no-op."""
        if not entries:
            return
        async with self._client() as client:
            session_id = await self._session(client, key, create=True)
            assert session_id is not None
            try:
                await self._append(client, session_id, key, entries)
            except NotFound:
                # The session this store remembered was deleted by someone else: start it again.
                self._forget(key, session_id)
                session_id = await self._session(client, key, create=True)
                assert session_id is not None
                await self._append(client, session_id, key, entries)

    async def _append(
        self, client: AsyncHandoffClient, session_id: str, key: SessionKey, lines: list[SessionStoreEntry]
    ) -> None:
        items = [item for line in lines if (item := await self._line_entry(client, session_id, line)) is not None]
        if key.get("subpath"):
            await _entries.append_in_batches(client, session_id, items)
        else:
            await self._append_with_summary(client, session_id, key, lines, items)

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        """Every line of the transcript in order, or None when it was never written (or was deleted)."""
        async with self._client() as client:
            session_id = await self._session(client, key, create=False)
            if session_id is None:
                return None
            try:
                return [
                    await self._line(client, session_id, entry)
                    async for entry in _entries.entries(client, session_id, id_prefix=LINE_PREFIX)
                ]
            except NotFound:
                self._forget(key, session_id)
                return None

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        """The project's main transcripts with their last write time (epoch ms)."""
        async with self._client() as client:
            return [
                {"session_id": stored["session_id"], "mtime": _ms(session)}
                async for session, stored in self._listed(client, self._project_type(project_key))
                if stored.get("project_key") == project_key and "subpath" not in stored
            ]

    async def list_session_summaries(self, project_key: str) -> list[SessionSummaryEntry]:
        """The current summary of each of the project's sessions (stale ones left out: the SDK re-folds them)."""
        summaries: list[SessionSummaryEntry] = []
        async with self._client() as client:
            async for session, stored in self._listed(client, self._project_type(project_key)):
                copy = (session.context_summary or {}).get(SUMMARY_CONTEXT)
                if stored.get("project_key") != project_key or "subpath" in stored or not isinstance(copy, dict):
                    continue
                if copy.get("version") != session.checkpoint_count:
                    continue
                data = json.loads(copy["summary"])
                summaries.append({"session_id": stored["session_id"], "mtime": _ms(session), "data": data})
        return summaries

    async def delete(self, key: SessionKey) -> None:
        """Delete a transcript; a main one takes its subagent transcripts with it (they go first)."""
        async with self._client() as client:
            if not key.get("subpath"):
                for subpath in await self._subkeys(client, key["project_key"], key["session_id"]):
                    await self._delete_one(client, {**key, "subpath": subpath})
            await self._delete_one(client, key)

    async def _delete_one(self, client: AsyncHandoffClient, key: SessionKey) -> None:
        session_id = await self._session(client, key, create=False)
        self._forget(key, session_id)
        if session_id is not None:
            with contextlib.suppress(NotFound):
                await client.delete_session(session_id)

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        """The subpaths (subagent transcripts) stored under a session."""
        async with self._client() as client:
            return await self._subkeys(client, key["project_key"], key["session_id"])

    async def _subkeys(self, client: AsyncHandoffClient, project_key: str, session_id: str) -> list[str]:
        return [
            stored["subpath"]
            async for _, stored in self._listed(client, self._subagents_type(project_key, session_id))
            if stored.get("project_key") == project_key and stored.get("session_id") == session_id
        ]
