"""``AsyncHandoffClient``: every route of the REST contract as one awaitable method, and the source of both clients.

Each method builds its request in :mod:`handoff.client._core` and runs it through the shared retry policy; this
module only sends, sleeps and returns. The answers are the service's own schemas (``SessionRead``,
``TypedEntry``, ``HandoffContext``...), so a field means the same on both sides of the wire.

The blocking ``HandoffClient`` (``_sync.py``) is generated from this file by ``python -m handoff.client._unasync``,
so each route is written once. Adding one:

1. in ``_core.py``, a function returning its :class:`~handoff.client._core.Call` (method, path, body, how to read
   the answer, what keeps a retry from storing twice);
2. here, one method with typed arguments and a docstring: ``return await self._run(_core.that_function(...))``;
3. ``python -m handoff.client._unasync`` rewrites ``_sync.py``; commit both (``tests/test_client_generated.py``
   fails while ``_sync.py`` differs from what the generator makes of this file).

Never edit ``_sync.py`` by hand. Write what has a blocking twin: ``await``, ``async for``/``async with``,
``AsyncIterator``, ``anyio.sleep`` (the one ``anyio`` function used here) and httpx's async names; uploads,
downloads and event streams are sketched in :mod:`handoff.client._unasync`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self, TypeVar

import anyio
import httpx
from httpx_sse import EventSource

from handoff import __version__
from handoff.analytics.schemas import (
    Activity,
    AgentList,
    ErrorList,
    HandoffList,
    Lineage,
    PathList,
    StaleList,
    Summary,
)
from handoff.blobs.schemas import BlobPage, BlobRead
from handoff.claims.schemas import ClaimCreated, ClaimList, ClaimRead, Heartbeat
from handoff.client import _core, _events
from handoff.client._core import (
    ArtifactActionName,
    Call,
    ClientOptions,
    EntryTypeName,
    Outcome,
    RetryPolicy,
    SessionStatusName,
    Sleep,
)
from handoff.client._events import Event
from handoff.client.config import load_client_config
from handoff.client.errors import HandoffClientError
from handoff.plans.schemas import PhaseInput, PlanRead
from handoff.sessions.schemas import (
    ActionEntry,
    Artifact,
    BatchResult,
    HandoffContext,
    McpContext,
    ReplayContext,
    SessionPage,
    SessionRead,
    TypedEntry,
    WorkLogCreate,
    WorkLogEntry,
    WorkLogPage,
)

T = TypeVar("T")
Instant = datetime | str | None
BlobSource = bytes | str | os.PathLike[str] | IO[bytes]
"""What an upload reads: the bytes themselves, a file's path, or a file object open for binary reading."""
BlobTarget = str | os.PathLike[str] | IO[bytes]
"""Where a download writes: a file's path or a file object open for binary writing."""


def _open(path: str | os.PathLike[str], mode: Literal["rb", "wb"]) -> IO[bytes]:
    """A local file, opened the blocking way on purpose: it is brief, ``_FileChunks`` reads it the same way, and
    the blocking twin of this module is generated from it (an ``anyio`` file would not translate)."""
    return Path(path).open(mode)


class _FileChunks:
    """A file object read ``UPLOAD_CHUNK_BYTES`` at a time while httpx sends it: never all of it in memory."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := self._file.read(_core.UPLOAD_CHUNK_BYTES):
            yield chunk


class AsyncHandoffClient:
    """An async client of one handoff service, scoped to the workspace of its API key.

    ``base_url`` and ``api_key`` default to ``HANDOFF_URL`` and ``HANDOFF_API_KEY``. Appends get an entry id
    and creations an ``Idempotency-Key`` when you give none, so the built-in retries (``max_retries`` on 503
    and failed connections, exponential backoff from ``backoff_base`` seconds, capped at ``backoff_max``) never
    store anything twice. Pass ``transport`` (or a ready ``http_client``) to reach the service another way,
    e.g. an ``httpx.MockTransport`` in tests. Use it as ``async with`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = _core.DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = 3,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        config = load_client_config(base_url, api_key)
        self._options = ClientOptions(
            base_url=config.url,
            api_key=config.api_key,
            timeout=timeout,
            retry=RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max),
            user_agent=f"handoff-client/{__version__}",
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=timeout)

    @property
    def base_url(self) -> str:
        return self._options.base_url

    async def aclose(self) -> None:
        """Close the connection pool (not an injected ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, call: Call[T], *, stream: bool = False) -> T:
        steps = _core.execute(call, self._options.retry)
        outcome: Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Sleep):
                await anyio.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = await self._http.send(step.build(self._http, self._options), stream=stream)
            except httpx.TransportError as exc:
                outcome = exc
            if stream and isinstance(outcome, httpx.Response) and outcome.status_code >= 300:
                # Read and close a refusal now: its problem body becomes the error, and a retry needs the connection.
                await outcome.aread()
                await outcome.aclose()

    @asynccontextmanager
    async def _stream(self, call: Call[httpx.Response]) -> AsyncIterator[httpx.Response]:
        """The answer of ``call`` with its body not yet read (retries happen before its first byte); closed after."""
        response = await self._run(call, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    # Health --------------------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /healthz``: the process is up."""
        return await self._run(_core.health("/healthz"))

    async def ready(self) -> dict[str, Any]:
        """``GET /readyz``: the database answers (raises ``Unavailable`` when it does not)."""
        return await self._run(_core.health("/readyz"))

    # Sessions ------------------------------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        agent_type: str | None = None,
        plan: str | None = None,
        context_summary: Mapping[str, Any] | None = None,
        external_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> SessionRead:
        """Open a session (get-or-create by ``external_id``; retry-safe with a generated Idempotency-Key)."""
        return await self._run(
            _core.create_session(
                agent_type=agent_type,
                plan=plan,
                context_summary=context_summary,
                external_id=external_id,
                idempotency_key=idempotency_key,
            )
        )

    async def list_sessions(
        self,
        *,
        status: SessionStatusName | None = None,
        agent_type: str | None = None,
        plan: str | None = None,
        external_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """One page of sessions, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""
        return await self._run(
            _core.list_sessions(
                status=status, agent_type=agent_type, plan=plan, external_id=external_id, limit=limit, cursor=cursor
            )
        )

    async def get_session(self, session_id: str) -> SessionRead:
        """A session without its arrays."""
        return await self._run(_core.get_session(session_id))

    async def delete_session(self, session_id: str) -> None:
        """Erase a session with its work log and artifacts."""
        await self._run(_core.delete_session(session_id))

    async def touch_session(self, session_id: str) -> SessionRead:
        """Mark the session active now."""
        return await self._run(_core.transition(session_id, "touch"))

    async def pause_session(self, session_id: str) -> SessionRead:
        """Pause the session."""
        return await self._run(_core.transition(session_id, "pause"))

    async def resume_session(self, session_id: str) -> SessionRead:
        """Resume a paused session."""
        return await self._run(_core.transition(session_id, "resume"))

    async def complete_session(self, session_id: str, summary: str | None = None) -> SessionRead:
        """End the session as completed."""
        return await self._run(_core.end_session(session_id, status="completed", summary=summary, route="complete"))

    async def fail_session(self, session_id: str, reason: str | None = None) -> SessionRead:
        """End the session as failed; ``reason`` becomes its ``final_summary``."""
        return await self._run(_core.end_session(session_id, status="failed", summary=reason, route="fail"))

    async def end_session(
        self, session_id: str, status: Literal["completed", "failed"], summary: str | None = None
    ) -> SessionRead:
        """End the session with an explicit final status."""
        return await self._run(_core.end_session(session_id, status=status, summary=summary, route="end"))

    # Work log and artifacts ----------------------------------------------------------------------------------

    async def log_action(
        self,
        session_id: str,
        action: str,
        *,
        details: Mapping[str, Any] | None = None,
        id: str | None = None,
        blob_id: str | None = None,
    ) -> ActionEntry:
        """Append an action entry (``id`` generated when absent: a retry stores it once); ``blob_id`` names a blob
        of the session the action produced or read."""
        call = _core.log_action(session_id, action=action, details=details, id=id, blob_id=blob_id)
        return await self._run(call)

    async def log_work(
        self,
        session_id: str,
        message: str,
        *,
        type: EntryTypeName | None = None,
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        blob_id: str | None = None,
    ) -> TypedEntry:
        """Append a typed entry (``info`` by default; ``checkpoint`` and ``decision`` feed the replay context);
        ``blob_id`` names a blob of the session holding the entry's content (a checkpoint's state, a big output)."""
        call = _core.log_work(session_id, message=message, type=type, data=data, id=id, blob_id=blob_id)
        return await self._run(call)

    async def log_work_batch(
        self, session_id: str, entries: Sequence[WorkLogCreate | Mapping[str, Any]]
    ) -> BatchResult:
        """Append up to 1,000 typed entries in one atomic update; entries already stored count as duplicates.

        Entries without an ``id`` get one, so a retried batch stores each entry once (its answer then counts
        what the first attempt stored as duplicates).
        """
        return await self._run(_core.log_work_batch(session_id, entries))

    async def get_work_log(
        self,
        session_id: str,
        *,
        type: EntryTypeName | None = None,
        offset: int = 0,
        limit: int = 100,
        order: Literal["asc", "desc"] = "asc",
        id_prefix: str | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> WorkLogPage:
        """A page of the work log with the matching total: of one entry type, of ids starting with ``id_prefix``,
        after or before (exclusive) the entry of that id; ``offset`` counts from there. Each is an index read."""
        return await self._run(
            _core.get_work_log(
                session_id,
                type=type,
                offset=offset,
                limit=limit,
                order=order,
                id_prefix=id_prefix,
                after=after,
                before=before,
            )
        )

    async def get_work_log_entry(self, session_id: str, entry_id: str) -> WorkLogEntry:
        """One work-log entry by id (``NotFound`` when absent)."""
        return await self._run(_core.get_entry(session_id, "work-log", entry_id, _core.work_log_entry))

    async def delete_work_log_entry(self, session_id: str, entry_id: str) -> None:
        """Erase one work-log entry; the counters move back with it (``NotFound`` when absent)."""
        await self._run(_core.delete_entry(session_id, "work-log", entry_id))

    async def pop_work_log(self, session_id: str) -> WorkLogEntry | None:
        """Remove and return the newest work-log entry atomically; None when the log is empty. Never retried."""
        return await self._run(_core.pop_entry(session_id, "work-log", _core.work_log_entry))

    async def clear_work_log(self, session_id: str) -> None:
        """Remove every work-log entry; the session stays, its log counters at zero."""
        await self._run(_core.clear_entries(session_id, "work-log"))

    async def recent_actions(self, session_id: str, *, limit: int = 10) -> list[WorkLogEntry]:
        """The newest work-log entries, newest first."""
        return await self._run(_core.recent_actions(session_id, limit=limit))

    async def record_artifact(
        self,
        session_id: str,
        path: str,
        *,
        action: ArtifactActionName | None = None,
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,
        blob_id: str | None = None,
    ) -> Artifact:
        """Record a file the agent touched (``modified`` by default); ``blob_id`` names its content's blob."""
        call = _core.record_artifact(session_id, path=path, action=action, metadata=metadata, id=id, blob_id=blob_id)
        return await self._run(call)

    async def list_artifacts(
        self, session_id: str, *, action: ArtifactActionName | None = None, offset: int = 0, limit: int = 1000
    ) -> list[Artifact]:
        """The session's artifacts in the order they were recorded (``limit`` 1..1000 from ``offset``)."""
        return await self._run(_core.list_artifacts(session_id, action=action, offset=offset, limit=limit))

    async def get_artifact(self, session_id: str, entry_id: str) -> Artifact:
        """One artifact by id (``NotFound`` when absent)."""
        return await self._run(_core.get_entry(session_id, "artifacts", entry_id, _core.artifact))

    async def delete_artifact(self, session_id: str, entry_id: str) -> None:
        """Erase one artifact; ``artifact_count`` moves back with it (``NotFound`` when absent)."""
        await self._run(_core.delete_entry(session_id, "artifacts", entry_id))

    async def pop_artifact(self, session_id: str) -> Artifact | None:
        """Remove and return the newest artifact atomically; None when there is none. Never retried."""
        return await self._run(_core.pop_entry(session_id, "artifacts", _core.artifact))

    async def clear_artifacts(self, session_id: str) -> None:
        """Remove every artifact; the session stays, ``artifact_count`` at zero."""
        await self._run(_core.clear_entries(session_id, "artifacts"))

    # Blobs ---------------------------------------------------------------------------------------------------

    async def upload_blob(self, session_id: str, source: BlobSource, *, content_type: str | None = None) -> BlobRead:
        """Store a blob in the session: ``bytes``, a file's path or a binary file object, streamed as it is read.

        ``content_type`` defaults to ``application/octet-stream``. Never retried (each upload stores a new blob);
        reference the answer's ``blob_id`` from an entry or an artifact.
        """
        if isinstance(source, bytes):
            return await self._run(_core.upload_blob(session_id, source, content_type=content_type))
        if isinstance(source, str | os.PathLike):
            with _open(source, "rb") as file:
                return await self._run(_core.upload_blob(session_id, _FileChunks(file), content_type=content_type))
        return await self._run(_core.upload_blob(session_id, _FileChunks(source), content_type=content_type))

    async def download_blob(self, session_id: str, blob_id: str, *, to: BlobTarget) -> int:
        """Write a blob's bytes into ``to`` (a path or a binary file object) as they arrive; returns how many."""
        if isinstance(to, str | os.PathLike):
            with _open(to, "wb") as file:
                return await self.download_blob(session_id, blob_id, to=file)
        written = 0
        async with self._stream(_core.download_blob(session_id, blob_id)) as response:
            async for chunk in response.aiter_bytes():
                to.write(chunk)
                written += len(chunk)
        return written

    async def list_blobs(self, session_id: str, *, offset: int = 0, limit: int = 100) -> BlobPage:
        """A page of the session's blobs, oldest first, with how many it has."""
        return await self._run(_core.list_blobs(session_id, offset=offset, limit=limit))

    async def delete_blob(self, session_id: str, blob_id: str) -> None:
        """Delete a blob (entries that reference it keep its id; a read of it is then 404)."""
        await self._run(_core.delete_blob(session_id, blob_id))

    # Context, handoff, replay --------------------------------------------------------------------------------

    async def update_context(
        self, session_id: str, context: Mapping[str, Any], *, replace: bool = False
    ) -> SessionRead:
        """Set these context keys (``PATCH``), or with ``replace=True`` replace the whole map (``PUT``)."""
        return await self._run(_core.update_context(session_id, context, replace=replace))

    async def handoff(
        self,
        session_id: str,
        summary: str,
        *,
        next_steps: Sequence[str] | None = None,
        blockers: Sequence[str] | None = None,
        context_for_next: Mapping[str, Any] | None = None,
    ) -> SessionRead:
        """Leave notes for the next agent and pause the session."""
        return await self._run(
            _core.handoff(
                session_id,
                summary=summary,
                next_steps=next_steps,
                blockers=blockers,
                context_for_next=context_for_next,
            )
        )

    async def get_handoff_context(self, session_id: str) -> HandoffContext:
        """What the next agent needs to pick the session up."""
        return await self._run(_core.get_handoff_context(session_id))

    async def get_replay_context(self, session_id: str) -> ReplayContext:
        """Everything needed to continue the session from its last checkpoint."""
        return await self._run(_core.get_replay_context(session_id))

    async def get_mcp_context(self, session_id: str) -> McpContext:
        """The compact view MCP clients get."""
        return await self._run(_core.get_mcp_context(session_id))

    async def replay_session(
        self, session_id: str, *, agent_type: str | None = None, idempotency_key: str | None = None
    ) -> SessionRead:
        """Continue the session (any status) in a new active one; retry-safe with a generated Idempotency-Key."""
        return await self._run(_core.replay_session(session_id, agent_type=agent_type, idempotency_key=idempotency_key))

    # Events --------------------------------------------------------------------------------------------------

    async def events(
        self,
        session_id: str | None = None,
        *,
        types: Collection[str] | None = None,
        last_event_id: str | None = None,
        agent_type: str | None = None,
        max_reconnects: int = 10,
        on_open: Callable[[], object] | None = None,
    ) -> AsyncIterator[Event]:
        """The workspace's events as they happen (one session's with ``session_id``), for as long as you iterate.

        Reconnects by itself with ``Last-Event-ID`` when the stream ends or fails (a slow consumer dropped, a
        restart, a ``503``/``429``), so each event arrives once, in order; ``max_reconnects`` failed attempts in
        a row raise. ``Gone`` (410) means ``last_event_id`` is too old: re-read the session and subscribe
        afresh. Close the iterator when you stop early: it holds a connection while open. ``on_open`` is called
        each time a connection is answered: the service follows the events from then on, so a caller that must not
        miss the next write (the MCP resource subscriptions) waits for it before telling its own client.
        """
        subscription = _events.Subscription(
            session_id=session_id,
            types=types,
            last_event_id=last_event_id,
            agent_type=agent_type,
            policy=self._options.retry,
            max_reconnects=max_reconnects,
        )
        while True:
            try:
                async with self._stream(subscription.call()) as response:
                    subscription.opened()
                    if on_open is not None:
                        on_open()
                    async for message in EventSource(response).aiter_sse():
                        if (event := subscription.read(message)) is not None:
                            yield event
            except (HandoffClientError, httpx.TransportError) as exc:
                wait = subscription.lost(exc)
            else:  # not under the except: ended() may raise, giving up on a stream that is always dropped
                wait = subscription.ended()
            await anyio.sleep(wait)

    # Handoff claims ------------------------------------------------------------------------------------------

    async def claim_handoff(
        self, *, agent_type: str | None = None, plan: str | None = None, lease_seconds: int | None = None
    ) -> ClaimCreated | None:
        """Claim the oldest waiting handoff and get its replay session to work in; ``None`` when nothing waits."""
        return await self._run(_core.claim_handoff(agent_type=agent_type, plan=plan, lease_seconds=lease_seconds))

    async def list_claims(self, *, state: str | None = None, limit: int = 50, cursor: str | None = None) -> ClaimList:
        """A page of the workspace's claims, newest first."""
        return await self._run(_core.list_claims(state=state, limit=limit, cursor=cursor))

    async def get_claim(self, claim_id: str) -> ClaimRead:
        """One claim, its state as of now."""
        return await self._run(_core.get_claim(claim_id))

    async def heartbeat_claim(self, claim_id: str) -> Heartbeat:
        """Renew a claim's lease from now (any write to its replay session renews it too)."""
        return await self._run(_core.heartbeat_claim(claim_id))

    async def release_claim(self, claim_id: str, *, reason: str | None = None) -> ClaimRead:
        """Give the handoff back: the replay session fails, saying why, and the handoff waits again."""
        return await self._run(_core.release_claim(claim_id, reason=reason))

    # Plans ---------------------------------------------------------------------------------------------------

    async def create_plan(
        self,
        slug: str,
        title: str,
        *,
        description: str | None = None,
        phases: Sequence[PhaseInput | Mapping[str, Any]] | None = None,
        current_phase: str | None = None,
    ) -> PlanRead:
        """Create a plan of phases and tasks (slugs are unique per workspace: 409 ``Conflict``)."""
        return await self._run(
            _core.create_plan(
                slug=slug, title=title, description=description, phases=phases, current_phase=current_phase
            )
        )

    async def list_plans(self) -> list[PlanRead]:
        """The workspace's plans."""
        return await self._run(_core.list_plans())

    async def get_plan(self, slug: str) -> PlanRead:
        """A plan with its progress."""
        return await self._run(_core.get_plan(slug))

    async def update_plan(
        self,
        slug: str,
        *,
        title: str | None = None,
        description: str | None = None,
        current_phase: str | None = None,
    ) -> PlanRead:
        """Change a plan's title, description or current phase."""
        return await self._run(
            _core.update_plan(slug, title=title, description=description, current_phase=current_phase)
        )

    async def set_task_status(
        self, slug: str, *, phase: str, task: str, status: Literal["pending", "in_progress", "completed"]
    ) -> PlanRead:
        """Set one task's status."""
        return await self._run(_core.set_task_status(slug, phase=phase, task=task, status=status))

    async def list_plan_sessions(self, slug: str) -> list[SessionRead]:
        """The sessions working on a plan, newest first."""
        return await self._run(_core.list_plan_sessions(slug))

    # Analytics -----------------------------------------------------------------------------------------------
    # ``since``/``until`` select sessions by started_at: a datetime, or an ISO 8601 string (a date means 00:00 UTC).

    async def analytics_summary(self, *, since: Instant = None, until: Instant = None) -> Summary:
        """Sessions by status and agent type, duration avg/p50/p95 of ended sessions, totals."""
        return await self._run(_core.analytics("summary", Summary, since=since, until=until))

    async def analytics_agents(self, *, since: Instant = None, until: Instant = None) -> AgentList:
        """Per agent type: sessions, success rate, average duration and actions, errors."""
        return await self._run(_core.analytics("agents", AgentList, since=since, until=until))

    async def analytics_activity(
        self, *, bucket: Literal["hour", "day"] = "day", since: Instant = None, until: Instant = None
    ) -> Activity:
        """Sessions started, completed and failed per UTC hour or day."""
        return await self._run(_core.analytics("activity", Activity, bucket=bucket, since=since, until=until))

    async def analytics_artifacts(self, *, limit: int = 20, since: Instant = None, until: Instant = None) -> PathList:
        """The most touched paths."""
        return await self._run(_core.analytics("artifacts", PathList, limit=limit, since=since, until=until))

    async def analytics_errors(self, *, limit: int = 50, since: Instant = None, until: Instant = None) -> ErrorList:
        """The newest error entries across the workspace's sessions."""
        return await self._run(_core.analytics("errors", ErrorList, limit=limit, since=since, until=until))

    async def stale_sessions(
        self, *, idle_minutes: int = 30, limit: int = 100, since: Instant = None, until: Instant = None
    ) -> StaleList:
        """Active sessions idle for longer than ``idle_minutes``, longest idle first."""
        return await self._run(
            _core.analytics("stale", StaleList, idle_minutes=idle_minutes, limit=limit, since=since, until=until)
        )

    async def list_waiting_handoffs(
        self, *, limit: int = 100, since: Instant = None, until: Instant = None
    ) -> HandoffList:
        """Paused sessions with handoff notes that no replay continues yet, longest waiting first."""
        return await self._run(_core.analytics("handoffs", HandoffList, limit=limit, since=since, until=until))

    async def get_lineage(self, session_id: str) -> Lineage:
        """The session's ancestors (oldest first) and descendants along ``replayed_from``."""
        return await self._run(_core.lineage(session_id))
