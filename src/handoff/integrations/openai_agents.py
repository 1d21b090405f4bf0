"""OpenAI Agents SDK conversation memory kept in handoff: ``HandoffSession``, a ``Session``.

One SDK session is one handoff session (``external_id`` ``openai-agents:<session_id>``, agent type
``openai-agents``), created on the first ``add_items``; reads of a session never written return nothing and
create nothing. Each conversation item is an ``info`` entry (``error`` for a failed tool output) whose message
is what a person reads (``user: fix the login bug``, ``tool call get_weather``), the item itself in its data
(one blob of the session when large, as :mod:`handoff.integrations._entries` does). ``add_items`` is one batch
append, atomic and in order (up to the batch route's bounds: 1,000 entries, 1 MiB); ``pop_item`` is the
service's atomic pop; ``clear_session`` its clear; ``get_items(limit)`` reads the newest ``limit`` in one
descending index read and returns them in chronological order, ``session_settings.limit`` applying when no
limit is given, as the SDK documents.

The SDK runs sessions on whichever event loop calls it (``Runner.run_sync`` makes its own), so unless a
``client=`` is given each call uses a client of its own on the calling loop.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit

from handoff.client import AsyncHandoffClient, NotFound
from handoff.integrations import _entries

AGENT_TYPE = "openai-agents"
ITEM_PREFIX = "it."


def describe(item: Any) -> tuple[str, str]:
    """The entry type and message of a conversation item, as a person reads it in handoff."""
    if not isinstance(item, dict):
        return "info", f"item: {item!r}"[:500]
    kind = item.get("type", "message")
    if "role" in item and kind == "message":
        content = item.get("content")
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        return "info", f"{item['role']}: {content}"[:500]
    if kind == "function_call":
        return "info", f"tool call {item.get('name', '?')}"
    if kind == "function_call_output":
        output = str(item.get("output", ""))
        return ("error" if output.lower().startswith("error") else "info"), f"tool output: {output}"[:500]
    return "info", f"{kind}"[:500]


class HandoffSession(SessionABC):
    """An Agents SDK session stored in handoff: ``Runner.run(agent, input, session=HandoffSession("chat-1"))``."""

    def __init__(
        self,
        session_id: str,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        client: AsyncHandoffClient | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )
        self._base_url, self._api_key, self._given = base_url, api_key, client
        self._handoff_id: str | None = None

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[AsyncHandoffClient]:
        if self._given is not None:
            yield self._given
            return
        async with AsyncHandoffClient(self._base_url, self._api_key) as client:
            yield client

    async def _session(self, client: AsyncHandoffClient, *, create: bool) -> str | None:
        if self._handoff_id is not None:
            return self._handoff_id
        external_id = _entries.external_id(AGENT_TYPE, self.session_id)
        if create:
            found = await client.create_session(
                agent_type=AGENT_TYPE, external_id=external_id, context_summary={"openai_session_id": self.session_id}
            )
        else:
            page = await client.list_sessions(external_id=external_id, limit=1)
            if not page.items:
                return None
            found = page.items[0]
        self._handoff_id = found.session_id
        return found.session_id

    async def _item(self, client: AsyncHandoffClient, session_id: str, data: dict[str, Any]) -> TResponseInputItem:
        _, payload = await _entries.unpack(client, session_id, data["item"])
        item: TResponseInputItem = json.loads(payload)
        return item

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The items in chronological order; the newest ``limit`` (else ``session_settings.limit``) when set."""
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is not None and wanted <= 0:
            return []
        async with self._client() as client:
            session_id = await self._session(client, create=False)
            if session_id is None:
                return []
            try:
                if wanted is None:
                    found = [e async for e in _entries.entries(client, session_id, id_prefix=ITEM_PREFIX)]
                else:
                    found = []
                    async for entry in _entries.entries(
                        client, session_id, id_prefix=ITEM_PREFIX, order="desc", page=min(wanted, _entries.PAGE)
                    ):
                        found.append(entry)
                        if len(found) >= wanted:
                            break
                    found.reverse()
                return [await self._item(client, session_id, entry.data) for entry in found]
            except NotFound:  # deleted meanwhile
                self._handoff_id = None
                return []

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items in order, as one atomic batch (the large ones' blobs uploaded first)."""
        if not items:
            return
        serialized = [(f"{ITEM_PREFIX}{uuid.uuid4().hex}", item) for item in items]

        async def write(client: AsyncHandoffClient, session_id: str) -> None:
            prepared = []
            for entry_id, item in serialized:
                packed = await _entries.pack(
                    client, session_id, "json", json.dumps(item, separators=(",", ":")).encode()
                )
                kind, message = describe(item)
                entry = {"id": entry_id, "type": kind, "message": message or "item", "data": {"item": packed}}
                prepared.append(_entries.referencing(entry, packed))
            await _entries.append_in_batches(client, session_id, prepared)

        async with self._client() as client:
            session_id = await self._session(client, create=True)
            assert session_id is not None
            try:
                await write(client, session_id)
            except NotFound:  # the session was deleted meanwhile: start a new one
                self._handoff_id = None
                session_id = await self._session(client, create=True)
                assert session_id is not None
                await write(client, session_id)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item, atomically (two racing pops never return the same item)."""
        async with self._client() as client:
            session_id = await self._session(client, create=False)
            if session_id is None:
                return None
            try:
                entry = await client.pop_work_log(session_id)
            except NotFound:
                self._handoff_id = None
                return None
            if entry is None or not hasattr(entry, "data"):
                return None
            data: dict[str, Any] = entry.data
            item = await self._item(client, session_id, data)
            await _entries.delete_blobs(client, session_id, _entries.blob_ids(data))
            return item

    async def clear_session(self) -> None:
        """Remove every item; the handoff session stays (its log empty)."""
        async with self._client() as client:
            session_id = await self._session(client, create=False)
            if session_id is not None:
                try:
                    await client.clear_work_log(session_id)
                    await _entries.delete_all_blobs(client, session_id)
                except NotFound:
                    self._handoff_id = None
