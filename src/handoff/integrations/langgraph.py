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

The operations are written once, as ``AsyncStore`` (``_langgraph_async``). The async methods call it with the
async client on the caller's loop. The sync methods (for sync graphs) call its generated blocking twin,
``SyncStore`` (``_langgraph_sync``), with a ``HandoffClient`` of their own, on the caller's thread: a sync graph
saves from several threads at once, and a blocking request costs about half the CPU of an async one handed to an
event loop thread and back (``scripts/bench_request_floor.py``). Only with a given async ``client=`` do the sync
methods run ``AsyncStore`` on a private event loop thread, where that client can be used.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from handoff.client import AsyncHandoffClient, HandoffClient
from handoff.integrations._langgraph_async import AsyncStore
from handoff.integrations._langgraph_entries import (
    AGENT_TYPE,
    checkpoint_entry_id,
    checkpoint_prefix,
    writes_prefix,
)
from handoff.integrations._langgraph_sync import SyncStore

__all__ = ["AGENT_TYPE", "HandoffCheckpointSaver", "checkpoint_entry_id", "checkpoint_prefix", "writes_prefix"]

T = TypeVar("T")


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
    from an event loop thread of their own, slower than the blocking client they make from ``base_url``/``api_key``,
    so give a client to async graphs only).
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
        self._store = AsyncStore(self, self._client)
        # The sync methods' store, made on first use: the blocking twin on a client of its own, or, with a given
        # async client, the async store on a loop thread.
        self._sync: SyncStore | None = None
        self._looped: tuple[_LoopThread, AsyncStore] | None = None
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
            sync, looped = self._sync, self._looped
            self._sync = self._looped = None
        if sync is not None:
            sync.client.close()
        if looped is not None:
            runner, _ = looped
            runner.stop()

    async def __aenter__(self) -> HandoffCheckpointSaver:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def __enter__(self) -> HandoffCheckpointSaver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _sync_store(self) -> SyncStore | tuple[_LoopThread, AsyncStore]:
        """The store the sync methods use (see the class docstring), made on first use."""
        with self._sync_lock:
            if self._given is not None:
                if self._looped is None:
                    self._looped = (_LoopThread(), AsyncStore(self, self._given))
                return self._looped
            if self._sync is None:
                self._sync = SyncStore(self, HandoffClient(self._base_url, self._api_key))
            return self._sync

    def _run(self, call: Callable[[Any], Any]) -> Any:
        """``call(store)`` for a sync method: on this thread, or its coroutine on the loop thread."""
        store = self._sync_store()
        if isinstance(store, SyncStore):
            return call(store)
        runner, looped = store
        return runner.run(call(looped))

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
        store = self._sync_store()
        if isinstance(store, SyncStore):
            yield from store.list(config, filter=filter, before=before, limit=limit)
            return

        async def collect(looped: AsyncStore) -> list[CheckpointTuple]:
            return [tup async for tup in looped.list(config, filter=filter, before=before, limit=limit)]

        runner, looped = store
        yield from runner.run(collect(looped))

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


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
