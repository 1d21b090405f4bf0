"""LangGraph checkpoints kept in handoff: ``HandoffCheckpointSaver``, a ``BaseCheckpointSaver``.

One LangGraph thread is one handoff session (``external_id`` ``langgraph:<thread_id>``, agent type
``langgraph``). A checkpoint is a ``checkpoint`` entry whose message says the step and the node that led to
it; a pending write is an entry next to it (``error`` for a node's error, ``warning`` for an interrupt, ``info``
otherwise). Their ids are deterministic, so reads are index reads, never scans:

- checkpoint: ``cp.<ns>.<checkpoint_id>`` (``<ns>`` is ``r`` for the root namespace, else a hash of it);
- its writes: ``wr.<ns>.<checkpoint_id>.<hash of task_id and index>``.

A value too large for its entry is one blob of the session that the entry names (its ``blob_id``, see
:mod:`handoff.integrations._entries`); removing a checkpoint removes its writes and their blobs.

``get_tuple`` by id is ``GET .../work-log/{id}`` plus one ``id_prefix`` read of its writes; the latest
checkpoint and ``list(before=, limit=)`` are ``id_prefix`` reads in descending log order from an anchor id.
Values go through the saver's ``serde``. Deterministic ids also make every write retry-safe.

The async methods use the client on the caller's event loop; the sync methods (for sync graphs) run the same
code on a private event loop thread with a client of their own, so there is one implementation of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT

from handoff.client import AsyncHandoffClient, Invalid, NotFound
from handoff.integrations import _entries
from handoff.sessions.schemas import TypedEntry

AGENT_TYPE = "langgraph"
T = TypeVar("T")


def _ns_key(checkpoint_ns: str) -> str:
    return "r" if checkpoint_ns == "" else _entries.digest(checkpoint_ns, 12)


def checkpoint_prefix(checkpoint_ns: str | None) -> str:
    """The id prefix of a namespace's checkpoints (of every namespace when None)."""
    return "cp." if checkpoint_ns is None else f"cp.{_ns_key(checkpoint_ns)}."


def checkpoint_entry_id(checkpoint_ns: str, checkpoint_id: str) -> str:
    return checkpoint_prefix(checkpoint_ns) + _entries.safe_token(checkpoint_id, 36)


def writes_prefix(checkpoint_ns: str, checkpoint_id: str) -> str:
    return f"wr.{_ns_key(checkpoint_ns)}.{_entries.safe_token(checkpoint_id, 36)}."


def _node(task_path: str) -> str:
    """The node name in a task path such as ``~__pregel_pull, agent``."""
    parts = [part.strip() for part in task_path.split(",")]
    return parts[1] if len(parts) > 1 and parts[1] else (task_path or "a task")


def _ids(config: RunnableConfig) -> tuple[str, str]:
    configurable = config["configurable"]
    return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", ""))


class _Store:
    """The saver's operations on one client (one event loop)."""

    def __init__(self, saver: HandoffCheckpointSaver, client: AsyncHandoffClient) -> None:
        self.saver = saver
        self.client = client
        # LangGraph saves a step's writes and its checkpoint concurrently: one creation per thread, not one each.
        self._creating = asyncio.Lock()

    # Sessions ------------------------------------------------------------------------------------------------

    async def session(self, thread_id: str, *, create: bool) -> str | None:
        """The session of a thread: found by ``external_id``, created on the first write (never by a read)."""
        cached = self.saver._sessions.get(thread_id)
        if cached is not None:
            return cached
        external_id = _entries.external_id(AGENT_TYPE, thread_id)
        if not create:
            page = await self.client.list_sessions(external_id=external_id, limit=1)
            if not page.items:
                return None
            self.saver._sessions[thread_id] = page.items[0].session_id
            return page.items[0].session_id
        async with self._creating:
            cached = self.saver._sessions.get(thread_id)
            if cached is None:
                found = await self.client.create_session(
                    agent_type=AGENT_TYPE, external_id=external_id, context_summary={"langgraph_thread_id": thread_id}
                )
                cached = self.saver._sessions[thread_id] = found.session_id
            return cached

    async def threads(self) -> AsyncIterator[tuple[str, str]]:
        """Every LangGraph thread of the workspace as ``(thread_id, session_id)``: a scan, for cross-thread calls."""
        cursor: str | None = None
        while True:
            page = await self.client.list_sessions(agent_type=AGENT_TYPE, limit=100, cursor=cursor)
            for session in page.items:
                thread_id = (session.context_summary or {}).get("langgraph_thread_id")
                if isinstance(thread_id, str):
                    yield thread_id, session.session_id
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _writing(self, thread_id: str, write: Any) -> Any:
        """Run ``write(session_id)``, once more on a fresh session if the cached one was deleted meanwhile."""
        session_id = await self.session(thread_id, create=True)
        assert session_id is not None
        try:
            return await write(session_id)
        except NotFound:
            self.saver._sessions.pop(thread_id, None)
            session_id = await self.session(thread_id, create=True)
            assert session_id is not None
            return await write(session_id)

    # Reads ---------------------------------------------------------------------------------------------------

    async def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, checkpoint_ns = _ids(config)
        session_id = await self.session(thread_id, create=False)
        if session_id is None:
            return None
        checkpoint_id = get_checkpoint_id(config)
        try:
            if checkpoint_id:
                entry = await self.client.get_work_log_entry(
                    session_id, checkpoint_entry_id(checkpoint_ns, checkpoint_id)
                )
            else:
                page = await self.client.get_work_log(
                    session_id, id_prefix=checkpoint_prefix(checkpoint_ns), order="desc", limit=1
                )
                if not page.items:
                    return None
                entry = page.items[0]
        except NotFound:
            return None
        if not isinstance(entry, TypedEntry):
            return None
        return await self._tuple(thread_id, session_id, entry)

    async def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> AsyncIterator[CheckpointTuple]:
        checkpoint_ns: str | None = None
        if config is not None:
            thread_id, _ = _ids(config)
            checkpoint_ns = config["configurable"].get("checkpoint_ns")
            session_id = await self.session(thread_id, create=False)
            threads = [(thread_id, session_id)] if session_id else []
        else:
            threads = [pair async for pair in self.threads()]
        before_id = get_checkpoint_id(before) if before else None
        anchor = None
        if before_id and config is not None:
            before_ns = (before or {}).get("configurable", {}).get("checkpoint_ns", checkpoint_ns or "")
            anchor = checkpoint_entry_id(before_ns, before_id)
        remaining = limit
        page = min(limit, _entries.PAGE) if limit and not filter else 100
        for thread_id, session_id in threads:
            async for tup in self._listed(
                thread_id=thread_id,
                session_id=session_id,
                checkpoint_ns=checkpoint_ns,
                anchor=anchor,
                before_id=before_id,
                filter=filter,
                page=page,
            ):
                if remaining is not None and remaining <= 0:
                    return
                yield tup
                if remaining is not None:
                    remaining -= 1

    async def _listed(
        self,
        *,
        thread_id: str,
        session_id: str,
        checkpoint_ns: str | None,
        anchor: str | None,
        before_id: str | None,
        filter: dict[str, Any] | None,
        page: int,
    ) -> AsyncIterator[CheckpointTuple]:
        """One thread's checkpoints, newest first, from the anchor (or, when it is gone, by id comparison)."""
        source = _entries.entries(
            self.client, session_id, id_prefix=checkpoint_prefix(checkpoint_ns), order="desc", before=anchor, page=page
        )
        try:
            first = await anext(source)
        except StopAsyncIteration:
            return
        except NotFound:  # the anchor is not stored: compare checkpoint ids, as LangGraph orders them
            anchor = None
            source = _entries.entries(
                self.client, session_id, id_prefix=checkpoint_prefix(checkpoint_ns), order="desc", page=page
            )
            try:
                first = await anext(source)
            except (StopAsyncIteration, NotFound):
                return

        async def chained() -> AsyncIterator[TypedEntry]:
            yield first
            async for entry in source:
                yield entry

        async for entry in chained():
            if anchor is None and before_id is not None and entry.data["checkpoint_id"] >= before_id:
                continue
            if filter:
                metadata = await self._metadata(session_id, entry)
                if not all(metadata.get(key) == value for key, value in filter.items()):
                    continue
            yield await self._tuple(thread_id, session_id, entry)

    async def _metadata(self, session_id: str, entry: TypedEntry) -> dict[str, Any]:
        value: dict[str, Any] = self.saver.serde.loads_typed(
            await _entries.unpack(self.client, session_id, entry.data["metadata"])
        )
        return value

    async def _tuple(self, thread_id: str, session_id: str, entry: TypedEntry) -> CheckpointTuple:
        data = entry.data
        checkpoint_ns, checkpoint_id, parent_id = data["checkpoint_ns"], data["checkpoint_id"], data["parent_id"]
        checkpoint: Checkpoint = self.saver.serde.loads_typed(
            await _entries.unpack(self.client, session_id, data["checkpoint"])
        )
        writes = [
            (
                write.data["task_id"],
                write.data["channel"],
                self.saver.serde.loads_typed(await _entries.unpack(self.client, session_id, write.data["value"])),
            )
            async for write in _entries.entries(
                self.client, session_id, id_prefix=writes_prefix(checkpoint_ns, checkpoint_id)
            )
        ]
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint=checkpoint,
            metadata=cast(CheckpointMetadata, await self._metadata(session_id, entry)),
            parent_config=(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": parent_id}}
                if parent_id
                else None
            ),
            pending_writes=writes,
        )

    # Writes --------------------------------------------------------------------------------------------------

    async def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, checkpoint_ns = _ids(config)
        parent_id = config["configurable"].get("checkpoint_id")
        checkpoint_id = checkpoint["id"]
        merged = get_checkpoint_metadata(config, metadata)
        entry_id = checkpoint_entry_id(checkpoint_ns, checkpoint_id)
        serialized = self.saver.serde.dumps_typed(checkpoint), self.saver.serde.dumps_typed(merged)
        ran = self.saver._ran.pop((thread_id, checkpoint_ns, parent_id or ""), None)
        message = _describe(merged, checkpoint_ns, ran, checkpoint.get("updated_channels") or list(new_versions))

        async def write(session_id: str) -> None:
            value = await _entries.pack(self.client, session_id, *serialized[0])
            meta = await _entries.pack(self.client, session_id, *serialized[1])
            entry = {
                "id": entry_id,
                "type": "checkpoint",
                "message": message,
                "data": {
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": checkpoint_id,
                    "parent_id": parent_id,
                    "step": merged.get("step"),
                    "source": merged.get("source"),
                    "run_id": merged.get("run_id"),
                    "checkpoint": value,
                    "metadata": meta,
                },
            }
            try:
                await self.client.log_work_batch(session_id, [_entries.referencing(entry, value)])
            except Invalid:  # the same checkpoint id stored with other content: this put replaces it
                with contextlib.suppress(NotFound):
                    stored = await self.client.get_work_log_entry(session_id, entry_id)
                    if isinstance(stored, TypedEntry):
                        await _entries.remove(self.client, session_id, [stored])
                await self.client.log_work_batch(session_id, [_entries.referencing(entry, value)])

        await self._writing(thread_id, write)
        return {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}
        }

    async def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> None:
        thread_id, checkpoint_ns = _ids(config)
        checkpoint_id = str(config["configurable"]["checkpoint_id"])
        node = _node(task_path)
        prefix = writes_prefix(checkpoint_ns, checkpoint_id)
        serialized: list[tuple[str, str, int, tuple[str, bytes], Any]] = []
        for position, (channel, value) in enumerate(writes):
            index = WRITES_IDX_MAP.get(channel, position)
            entry_id = prefix + _entries.digest(f"{task_id}|{index}", 10)
            serialized.append((entry_id, channel, index, self.saver.serde.dumps_typed(value), value))
        # Errors, interrupts and the like (negative indexes) replace an earlier write of the task.
        replaced = [entry_id for entry_id, _, index, _, _ in serialized if index < 0]
        self.saver._ran.setdefault((thread_id, checkpoint_ns, checkpoint_id), []).append(node)

        async def write(session_id: str) -> None:
            items = []
            for entry_id, channel, index, payload, value in serialized:
                packed = await _entries.pack(self.client, session_id, *payload)
                entry = _write_entry(
                    entry_id,
                    node=node,
                    channel=channel,
                    value=value,
                    task_id=task_id,
                    task_path=task_path,
                    index=index,
                    packed=packed,
                )
                items.append(_entries.referencing(entry, packed))
            for entry_id in replaced:
                with contextlib.suppress(NotFound):
                    stored = await self.client.get_work_log_entry(session_id, entry_id)
                    if isinstance(stored, TypedEntry):
                        await _entries.remove(self.client, session_id, [stored])
            try:
                await _entries.append_in_batches(self.client, session_id, items)
            except Invalid:  # a (task, index) stored before with another value: LangGraph keeps the first
                for item in items:
                    try:
                        await self.client.log_work_batch(session_id, [item])
                    except Invalid:  # kept the stored one: the blob uploaded for this one stands on nothing
                        await _entries.delete_blobs(self.client, session_id, _entries.blob_ids(item["data"]))

        await self._writing(thread_id, write)

    # Removals and copies -------------------------------------------------------------------------------------

    async def delete_thread(self, thread_id: str) -> None:
        session_id = await self.session(thread_id, create=False)
        self.saver._sessions.pop(thread_id, None)
        if session_id is not None:
            with contextlib.suppress(NotFound):
                await self.client.delete_session(session_id)

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = await self.session(source_thread_id, create=False)
        if source is None:
            return

        async def write(target: str) -> None:
            copied = [
                await _entries.copied(self.client, source, target, e)
                async for e in _entries.entries(self.client, source)
            ]
            await _entries.append_in_batches(self.client, target, copied)

        await self._writing(target_thread_id, write)

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in {"keep_latest", "delete"}:
            raise ValueError(f"unknown prune strategy {strategy!r}: keep_latest or delete")
        for thread_id in thread_ids:
            session_id = await self.session(thread_id, create=False)
            if session_id is None:
                continue
            if strategy == "delete":
                await self.client.clear_work_log(session_id)
                await _entries.delete_all_blobs(self.client, session_id)
                continue
            latest: set[str] = set()
            async for entry in _entries.entries(self.client, session_id, id_prefix="cp.", order="desc"):
                namespace = entry.data["checkpoint_ns"]
                if namespace not in latest:
                    latest.add(namespace)
                    continue
                await self._erase(session_id, entry)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        wanted = set(run_ids)
        if not wanted:
            return
        async for _, session_id in self.threads():
            doomed = [
                entry
                async for entry in _entries.entries(self.client, session_id, id_prefix="cp.")
                if entry.data.get("run_id") in wanted
            ]
            for entry in doomed:
                await self._erase(session_id, entry)

    async def _erase(self, session_id: str, entry: TypedEntry) -> None:
        """Remove a checkpoint, its writes and their blobs; the checkpoint first, so nobody reads half of it."""
        data = entry.data
        writes = [
            write
            async for write in _entries.entries(
                self.client, session_id, id_prefix=writes_prefix(data["checkpoint_ns"], data["checkpoint_id"])
            )
        ]
        await _entries.remove(self.client, session_id, [entry, *writes])


def _describe(metadata: CheckpointMetadata, checkpoint_ns: str, ran: list[str] | None, updated: Sequence[str]) -> str:
    """A checkpoint as a person reads it in handoff: ``step 3 (loop) after agent: messages``."""
    where = f" in {checkpoint_ns}" if checkpoint_ns else ""
    after = f" after {', '.join(dict.fromkeys(ran))}" if ran else ""
    channels = ", ".join(channel for channel in updated if not channel.startswith("branch:"))
    step = metadata.get("step")
    source = metadata.get("source")
    return f"LangGraph step {step} ({source}){where}{after}" + (f": {channels}" if channels else "")


def _write_entry(
    entry_id: str,
    *,
    node: str,
    channel: str,
    value: Any,
    task_id: str,
    task_path: str,
    index: int,
    packed: dict[str, Any],
) -> dict[str, Any]:
    if channel == ERROR:
        kind, message = "error", f"{node} failed: {value!r}"
    elif channel == INTERRUPT:
        kind, message = "warning", f"{node} interrupted, waiting for input: {value!r}"
    else:
        kind, message = "info", f"{node} wrote {channel}"
    return {
        "id": entry_id,
        "type": kind,
        "message": message[:1000],
        "data": {
            "task_id": task_id,
            "task_path": task_path,
            "index": index,
            "channel": channel,
            "value": packed,
        },
    }


class _LoopThread:
    """An event loop on a daemon thread, where the sync methods run the async code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="handoff-langgraph", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class HandoffCheckpointSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer that keeps each thread as a handoff session.

    ``HandoffCheckpointSaver()`` reads ``HANDOFF_URL`` and ``HANDOFF_API_KEY``; pass ``base_url=``/``api_key=``,
    or a ready ``client=`` (an ``AsyncHandoffClient``, used by the async methods; the sync methods then use it
    from their own loop, so give a client to one kind of graph only, or give ``base_url``/``api_key``).
    Use it as a context manager (``with``/``async with``) or call :meth:`close`/:meth:`aclose`.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: AsyncHandoffClient | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._base_url, self._api_key = base_url, api_key
        self._given = client
        self._client = client or AsyncHandoffClient(base_url, api_key)
        self._sessions: dict[str, str] = {}  # thread_id -> session_id; a session is never re-keyed
        self._ran: dict[tuple[str, str, str], list[str]] = {}  # nodes that wrote to a checkpoint, for messages
        self._store = _Store(self, self._client)
        self._sync: tuple[_LoopThread, _Store] | None = None
        self._sync_lock = threading.Lock()

    # Lifecycle -----------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the clients this saver made (not a given one)."""
        if self._given is None:
            await self._client.aclose()
        self._close_sync()

    def close(self) -> None:
        self._close_sync()
        if self._given is None and not _loop_running():
            asyncio.run(self._client.aclose())

    def _close_sync(self) -> None:
        with self._sync_lock:
            if self._sync is None:
                return
            runner, store = self._sync
            self._sync = None
        if store.client is not self._given:
            runner.run(store.client.aclose())
        runner.stop()

    async def __aenter__(self) -> HandoffCheckpointSaver:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def __enter__(self) -> HandoffCheckpointSaver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, call: Any) -> Any:
        """Run ``call(store)`` on the sync store's loop."""
        with self._sync_lock:
            if self._sync is None:
                runner = _LoopThread()
                client = self._given or runner.run(_make_client(self._base_url, self._api_key))
                self._sync = (runner, _Store(self, client))
            runner, store = self._sync
        return runner.run(call(store))

    # Async API -----------------------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._store.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for tup in self._store.list(config, filter=filter, before=before, limit=limit):
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._store.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self._store.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._store.delete_thread(str(thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._store.copy_thread(str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._store.prune([str(t) for t in thread_ids], strategy)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._store.delete_for_runs([str(r) for r in run_ids])

    # Sync API (the same code on the saver's own loop) --------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        result: CheckpointTuple | None = self._run(lambda store: store.get_tuple(config))
        return result

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect(store: _Store) -> list[CheckpointTuple]:
            return [tup async for tup in store.list(config, filter=filter, before=before, limit=limit)]

        yield from self._run(collect)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        result: RunnableConfig = self._run(lambda store: store.put(config, checkpoint, metadata, new_versions))
        return result

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._run(lambda store: store.put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._run(lambda store: store.delete_thread(str(thread_id)))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run(lambda store: store.copy_thread(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._run(lambda store: store.prune([str(t) for t in thread_ids], strategy))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run(lambda store: store.delete_for_runs([str(r) for r in run_ids]))


async def _make_client(base_url: str | None, api_key: str | None) -> AsyncHandoffClient:
    """A client created on the loop that will use it."""
    return AsyncHandoffClient(base_url, api_key)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
