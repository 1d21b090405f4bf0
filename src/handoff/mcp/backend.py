"""What the MCP tools run against: the service's domain functions, or a handoff service over HTTP.

The tools are written once, against :class:`HandoffBackend`. Two things satisfy it:

- :class:`handoff.client.AsyncHandoffClient`, for ``handoff mcp`` on a laptop (stdio, talking to a service);
- :class:`ServiceBackend`, inside the service at ``/mcp``: it calls ``handoff.sessions.service``/``queries``,
  ``handoff.claims.service`` and ``handoff.analytics.service``
  with the principal of the request's API key, exactly as the REST controllers do (no HTTP to itself).

Both also give ``events(session_id)``, what the session resource's subscriptions follow (``handoff.mcp.subscriptions``):
the client's SSE stream, or the app's events hub through :func:`handoff.events.follow.follow`.

Both raise errors with a status, title and detail (``HandoffClientError`` or the domain's ``HandoffError``);
:func:`problem_text` renders either as the one line an agent reads in a tool error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager
from os import PathLike
from typing import IO, Any, Literal, Protocol, TypeVar, cast

import pymongo
from pydantic import BaseModel, TypeAdapter, ValidationError
from pymongo.errors import PyMongoError

from handoff.analytics import service as analytics
from handoff.analytics.schemas import HandoffList
from handoff.blobs import service as blobs
from handoff.blobs.schemas import BlobRead
from handoff.claims import service as claims
from handoff.claims.schemas import ClaimCreated, ClaimRead, ClaimRequest, Heartbeat, ReleaseRequest
from handoff.client._events import Event
from handoff.client.errors import HandoffClientError
from handoff.config import Settings
from handoff.errors import FieldError, HandoffError, Invalid, Unavailable, is_unavailable
from handoff.events.follow import follow
from handoff.events.hub import Hub, Selection
from handoff.ops.shutdown import ShutdownSignal, until_shutdown
from handoff.schemas import FreeForm
from handoff.sessions import queries, service, views
from handoff.sessions.models import SessionStatus
from handoff.sessions.schemas import (
    ActionCreate,
    ActionEntry,
    Artifact,
    ArtifactCreate,
    CompleteRequest,
    FailRequest,
    HandoffContext,
    HandoffRequest,
    McpContext,
    ReplayContext,
    ReplayRequest,
    SessionCreate,
    SessionRead,
    TypedEntry,
    WorkLogCreate,
)
from handoff.workspaces.schemas import Principal

M = TypeVar("M", bound=BaseModel)

EntryTypeName = Literal["info", "warning", "error", "success", "checkpoint", "decision"]
ArtifactActionName = Literal["created", "modified", "deleted"]

_FREE_FORM: TypeAdapter[dict[str, Any]] = TypeAdapter(FreeForm)


class HandoffBackend(Protocol):
    """The operations the MCP tools need; ``AsyncHandoffClient`` has exactly these methods."""

    async def create_session(
        self,
        *,
        agent_type: str | None = None,
        plan: str | None = None,
        context_summary: Mapping[str, Any] | None = None,
        external_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> SessionRead: ...

    async def log_work(
        self,
        session_id: str,
        message: str,
        *,
        type: EntryTypeName | None = None,
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        blob_id: str | None = None,
    ) -> TypedEntry: ...

    async def log_action(
        self,
        session_id: str,
        action: str,
        *,
        details: Mapping[str, Any] | None = None,
        id: str | None = None,
        blob_id: str | None = None,
    ) -> ActionEntry: ...

    async def record_artifact(
        self,
        session_id: str,
        path: str,
        *,
        action: ArtifactActionName | None = None,
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,
        blob_id: str | None = None,
    ) -> Artifact: ...

    async def get_artifact(self, session_id: str, entry_id: str) -> Artifact: ...

    async def upload_blob(
        self, session_id: str, source: bytes | str | PathLike[str], *, content_type: str | None = None
    ) -> BlobRead: ...

    async def download_blob(self, session_id: str, blob_id: str, *, to: IO[bytes]) -> int: ...

    async def delete_blob(self, session_id: str, blob_id: str) -> None: ...

    async def update_context(
        self, session_id: str, context: Mapping[str, Any], *, replace: bool = False
    ) -> SessionRead: ...

    async def handoff(
        self,
        session_id: str,
        summary: str,
        *,
        next_steps: Sequence[str] | None = None,
        blockers: Sequence[str] | None = None,
        context_for_next: Mapping[str, Any] | None = None,
    ) -> SessionRead: ...

    async def get_handoff_context(self, session_id: str) -> HandoffContext: ...

    async def get_replay_context(self, session_id: str) -> ReplayContext: ...

    async def get_mcp_context(self, session_id: str) -> McpContext: ...

    async def replay_session(
        self, session_id: str, *, agent_type: str | None = None, idempotency_key: str | None = None
    ) -> SessionRead: ...

    async def complete_session(self, session_id: str, summary: str | None = None) -> SessionRead: ...

    async def fail_session(self, session_id: str, reason: str | None = None) -> SessionRead: ...

    async def list_waiting_handoffs(self, *, limit: int = 100) -> HandoffList: ...

    async def claim_handoff(
        self, *, agent_type: str | None = None, plan: str | None = None, lease_seconds: int | None = None
    ) -> ClaimCreated | None: ...

    async def heartbeat_claim(self, claim_id: str) -> Heartbeat: ...

    async def release_claim(self, claim_id: str, *, reason: str | None = None) -> ClaimRead: ...

    def events(
        self, session_id: str | None = None, *, on_open: Callable[[], object] | None = None
    ) -> AsyncIterator[Event]: ...


def problem_text(exc: BaseException) -> str:
    """``"<status> <title>: <detail> (field: message; ...)"`` for a client or domain error."""
    if isinstance(exc, HandoffClientError):
        return str(exc)
    if isinstance(exc, HandoffError):
        text = f"{exc.status_code} {exc.title}: {exc.detail}"
        if exc.errors:
            text += " (" + "; ".join(f"{e.field}: {e.message}" for e in exc.errors) + ")"
        return text
    return f"{type(exc).__name__}: {exc}"


def _validated(model: type[M], **fields: Any) -> M:
    """Build a request model as the REST route would parse it: a bad field is a 422 naming it."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        errors = [
            FieldError(field=".".join(str(part) for part in err["loc"]) or "body", message=err["msg"])
            for err in exc.errors()
        ]
        raise Invalid("The request is not valid: see errors.", errors=errors) from exc


class ServiceBackend:
    """The domain services, called with one principal's workspace (the ``/mcp`` endpoint's backend)."""

    def __init__(
        self,
        principal: Principal,
        settings: Settings,
        *,
        hub: Hub | None = None,
        shutdown: ShutdownSignal | None = None,
    ) -> None:
        self.principal = principal
        self.settings = settings
        self.hub = hub
        self.shutdown = shutdown

    @property
    def _workspace(self) -> str:
        return self.principal.workspace_id

    async def create_session(
        self,
        *,
        agent_type: str | None = None,
        plan: str | None = None,
        context_summary: Mapping[str, Any] | None = None,
        external_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> SessionRead:
        data = _validated(
            SessionCreate,
            agent_type=agent_type,
            plan=plan,
            context_summary=dict(context_summary) if context_summary is not None else None,
            external_id=external_id,
        )
        with _unavailable(self.settings):
            created = await service.create_session(
                self.principal, data, idempotency_key=idempotency_key, settings=self.settings
            )
        return created.session

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
        request = _validated(WorkLogCreate, message=message, type=type, data=_plain(data), id=id, blob_id=blob_id)
        with _unavailable(self.settings):
            entry, _ = await service.log_work(self._workspace, session_id, request, settings=self.settings)
        return cast(TypedEntry, views.work_log_entry(entry))

    async def log_action(
        self,
        session_id: str,
        action: str,
        *,
        details: Mapping[str, Any] | None = None,
        id: str | None = None,
        blob_id: str | None = None,
    ) -> ActionEntry:
        request = _validated(ActionCreate, action=action, details=_plain(details), id=id, blob_id=blob_id)
        with _unavailable(self.settings):
            entry, _ = await service.log_action(self._workspace, session_id, request, settings=self.settings)
        return cast(ActionEntry, views.work_log_entry(entry))

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
        request = _validated(
            ArtifactCreate, path=path, action=action, metadata=_plain(metadata), id=id, blob_id=blob_id
        )
        with _unavailable(self.settings):
            entry, _ = await service.record_artifact(self._workspace, session_id, request, settings=self.settings)
        return Artifact.model_validate(entry)

    async def get_artifact(self, session_id: str, entry_id: str) -> Artifact:
        with _unavailable(self.settings):
            return Artifact.model_validate(await queries.get_entry(self._workspace, session_id, "artifacts", entry_id))

    async def upload_blob(
        self, session_id: str, source: bytes | str | PathLike[str], *, content_type: str | None = None
    ) -> BlobRead:
        if not isinstance(source, bytes):  # the service never reads a path of its own machine for an agent
            raise Invalid("send the file's content: the service cannot read files where the agent runs")

        async def body() -> AsyncIterator[bytes]:
            yield source

        with _unavailable(self.settings):
            return await blobs.upload_blob(
                self._workspace,
                session_id,
                body(),
                content_type=content_type,
                declared_size=len(source),
                settings=self.settings,
            )

    async def download_blob(self, session_id: str, blob_id: str, *, to: IO[bytes]) -> int:
        written = 0
        with _unavailable(self.settings):
            download = await blobs.download(self._workspace, session_id, blob_id, range_header=None)
            async for chunk in download.body():
                to.write(chunk)
                written += len(chunk)
        return written

    async def delete_blob(self, session_id: str, blob_id: str) -> None:
        with _unavailable(self.settings):
            await blobs.delete_blob(self._workspace, session_id, blob_id)

    async def update_context(
        self, session_id: str, context: Mapping[str, Any], *, replace: bool = False
    ) -> SessionRead:
        try:
            checked = _FREE_FORM.validate_python(dict(context))
        except ValidationError as exc:
            raise Invalid(str(exc.errors()[0]["msg"]), errors=[FieldError("context", "invalid object")]) from exc
        with _unavailable(self.settings):
            return await service.set_context(self._workspace, session_id, checked, replace=replace)

    async def handoff(
        self,
        session_id: str,
        summary: str,
        *,
        next_steps: Sequence[str] | None = None,
        blockers: Sequence[str] | None = None,
        context_for_next: Mapping[str, Any] | None = None,
    ) -> SessionRead:
        notes = _validated(
            HandoffRequest,
            summary=summary,
            next_steps=list(next_steps) if next_steps is not None else None,
            blockers=list(blockers) if blockers is not None else None,
            context_for_next=_plain(context_for_next),
        )
        with _unavailable(self.settings):
            return await service.record_handoff(self._workspace, session_id, notes)

    async def get_handoff_context(self, session_id: str) -> HandoffContext:
        with _unavailable(self.settings):
            return await queries.handoff_context(self._workspace, session_id)

    async def get_replay_context(self, session_id: str) -> ReplayContext:
        with _unavailable(self.settings):
            return await queries.replay_context(self._workspace, session_id)

    async def get_mcp_context(self, session_id: str) -> McpContext:
        with _unavailable(self.settings):
            return await queries.mcp_context(self._workspace, session_id)

    async def replay_session(
        self, session_id: str, *, agent_type: str | None = None, idempotency_key: str | None = None
    ) -> SessionRead:
        request = _validated(ReplayRequest, agent_type=agent_type)
        with _unavailable(self.settings):
            created = await service.replay_session(
                self.principal,
                session_id,
                agent_type=request.agent_type,
                idempotency_key=idempotency_key,
                settings=self.settings,
            )
        return created.session

    async def complete_session(self, session_id: str, summary: str | None = None) -> SessionRead:
        request = _validated(CompleteRequest, summary=summary)
        with _unavailable(self.settings):
            return await service.end(
                self._workspace, session_id, status=SessionStatus.COMPLETED, summary=request.summary
            )

    async def fail_session(self, session_id: str, reason: str | None = None) -> SessionRead:
        request = _validated(FailRequest, reason=reason)
        with _unavailable(self.settings):
            return await service.end(self._workspace, session_id, status=SessionStatus.FAILED, summary=request.reason)

    async def list_waiting_handoffs(self, *, limit: int = 100) -> HandoffList:
        with _unavailable(self.settings):
            return await analytics.handoffs(self._workspace, limit=limit)

    async def claim_handoff(
        self, *, agent_type: str | None = None, plan: str | None = None, lease_seconds: int | None = None
    ) -> ClaimCreated | None:
        request = _validated(ClaimRequest, agent_type=agent_type, plan=plan, lease_seconds=lease_seconds)
        with _unavailable(self.settings):
            created, _ = await claims.claim_handoff(self.principal, request, settings=self.settings)
        return created

    async def heartbeat_claim(self, claim_id: str) -> Heartbeat:
        with _unavailable(self.settings):
            return await claims.heartbeat(self._workspace, claim_id)

    async def release_claim(self, claim_id: str, *, reason: str | None = None) -> ClaimRead:
        request = _validated(ReleaseRequest, reason=reason)
        with _unavailable(self.settings):
            return await claims.release(self._workspace, claim_id, request.reason)

    async def events(
        self, session_id: str | None = None, *, on_open: Callable[[], object] | None = None
    ) -> AsyncIterator[Event]:
        """The workspace's (or one session's) events from the app's hub, as the client's ``events()`` gives them.

        The session must be the workspace's (``404`` otherwise, before anything is followed); the stream counts
        toward the key's ``HANDOFF_MAX_STREAMS_PER_KEY`` like a REST one, and ends when the server shuts down.
        """
        if self.hub is None:
            raise Unavailable("events are not served here: this backend runs without the service's events hub")
        hub = self.hub
        if session_id is not None:
            with _unavailable(self.settings):
                await service.get_session(self._workspace, session_id)
        release = hub.admit(self.principal.api_key_id)
        try:
            followed = follow(hub, Selection(self._workspace, session_id), subscribed=on_open)
            async with aclosing(until_shutdown(followed, self.shutdown or ShutdownSignal())) as deliveries:
                async for delivery in deliveries:
                    yield Event(id=delivery.position.encode(), type=delivery.event.type, data=delivery.event.data)
        finally:
            release()


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


@contextmanager
def _unavailable(settings: Settings) -> Iterator[None]:
    """Run a tool's database work under the request deadline (MCP calls run in the session manager's own tasks,
    outside the deadline middleware), and turn "no primary / no server / out of time" into the 503 the REST
    API would answer."""
    try:
        with pymongo.timeout(settings.request_timeout_seconds):
            yield
    except PyMongoError as exc:
        if not is_unavailable(exc):
            raise
        raise Unavailable(
            "The database is unavailable or electing a primary; retry the call (appends are idempotent by id)."
        ) from exc
