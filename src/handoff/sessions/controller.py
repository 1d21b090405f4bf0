"""The sessions REST routes: parse, call one service function, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from handoff.auth import CurrentPrincipal
from handoff.config import Settings
from handoff.openapi import OptionalBodyOperation, no_content, problems, retried, shaped_as
from handoff.schemas import ENTRY_ID_PATTERN, PRINTABLE_ASCII, FreeForm
from handoff.sessions import queries, removals, service, views
from handoff.sessions.models import ArtifactAction, EntryType, SessionStatus
from handoff.sessions.queries import Order
from handoff.sessions.schemas import (
    ActionCreate,
    ActionEntry,
    Artifact,
    ArtifactCreate,
    ArtifactList,
    BatchResult,
    CompleteRequest,
    EndRequest,
    FailRequest,
    HandoffContext,
    HandoffRequest,
    McpContext,
    ReplayContext,
    ReplayRequest,
    SessionCreate,
    SessionPage,
    SessionRead,
    TypedEntry,
    WorkLogBatchCreate,
    WorkLogCreate,
    WorkLogEntry,
    WorkLogItems,
    WorkLogPage,
)

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        min_length=1,
        max_length=255,
        pattern=PRINTABLE_ASCII,
        description="Retry-safe creation: a repeat returns the same session (200) and creates nothing.",
    ),
]

SESSION_ID = "/{session_id:str}"
SessionId = FromPath[str]
ENTRY_ID = "/{entry_id:str}"
EntryIdPath = FromPath[str]
#: ``$slice`` takes a 32-bit position: a larger offset would be a 500 rather than an empty page.
Offset = Annotated[int, QueryParameter(ge=0, le=2**31 - 1)]
IdPrefix = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=64,
        pattern=ENTRY_ID_PATTERN,
        description="Only entries whose id starts with this (characters of the entry-id alphabet).",
    ),
]
AfterAnchor = Annotated[
    str | None,
    QueryParameter(
        min_length=1, max_length=64, pattern=ENTRY_ID_PATTERN, description="Only the entries after this one."
    ),
]
BeforeAnchor = Annotated[
    str | None,
    QueryParameter(
        min_length=1, max_length=64, pattern=ENTRY_ID_PATTERN, description="Only the entries before this one."
    ),
]


def _settings(request: Request[Any, Any, State]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _created_or_found(value: Any, created: bool) -> Response[Any]:
    return Response(value, status_code=HTTP_201_CREATED if created else HTTP_200_OK)


def _popped(value: Any) -> Response[Any]:
    """The popped entry (200), or 204 with no body when there was none."""
    if value is None:
        return Response(None, status_code=HTTP_204_NO_CONTENT)
    return Response(value, status_code=HTTP_200_OK)


class SessionController(Controller):
    """Agent sessions, their work log, artifacts, context, handoff and replay."""

    path = "/sessions"
    tags = ["sessions"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses={**problems(body=True), **retried(SessionRead, "The session of this external_id or Idempotency-Key")},
        operation_class=OptionalBodyOperation,
    )
    async def create_session(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        data: JSONBody[SessionCreate | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionRead]:
        """Open a session (get-or-create by external_id; retry-safe with Idempotency-Key); every field is optional."""
        result = await service.create_session(
            principal, data or SessionCreate(), idempotency_key=idempotency_key, settings=_settings(request)
        )
        return _created_or_found(result.session, result.created)

    @get("/", responses=problems())
    async def list_sessions(
        self,
        principal: CurrentPrincipal,
        status: FromQuery[SessionStatus | None] = None,
        agent_type: FromQuery[str | None] = None,
        plan: FromQuery[str | None] = None,
        external_id: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> SessionPage:
        """List sessions, newest first, with keyset pagination."""
        items, next_cursor = await service.list_sessions(
            principal.workspace_id,
            status=status,
            agent_type=agent_type,
            plan=plan,
            external_id=external_id,
            limit=limit,
            cursor=cursor,
        )
        return SessionPage(items=items, next_cursor=next_cursor)

    @get(SESSION_ID, responses=problems(404))
    async def get_session(self, principal: CurrentPrincipal, session_id: SessionId) -> SessionRead:
        """Get a session (without its arrays)."""
        return await service.get_session(principal.workspace_id, session_id)

    @delete(SESSION_ID, status_code=HTTP_204_NO_CONTENT, responses=problems(404))
    async def delete_session(self, principal: CurrentPrincipal, session_id: SessionId) -> None:
        """Erase a session with its work log and artifacts."""
        await service.delete_session(principal.workspace_id, session_id)

    # Lifecycle -----------------------------------------------------------------------------------------------

    @post(SESSION_ID + "/touch", status_code=HTTP_200_OK, responses=problems(404, 409))
    async def touch(self, principal: CurrentPrincipal, session_id: SessionId) -> SessionRead:
        """Mark the session active now."""
        return await service.touch(principal.workspace_id, session_id)

    @post(SESSION_ID + "/pause", status_code=HTTP_200_OK, responses=problems(404, 409))
    async def pause(self, principal: CurrentPrincipal, session_id: SessionId) -> SessionRead:
        """Pause the session."""
        return await service.pause(principal.workspace_id, session_id)

    @post(SESSION_ID + "/resume", status_code=HTTP_200_OK, responses=problems(404, 409))
    async def resume(self, principal: CurrentPrincipal, session_id: SessionId) -> SessionRead:
        """Resume the session."""
        return await service.resume(principal.workspace_id, session_id)

    @post(
        SESSION_ID + "/complete",
        status_code=HTTP_200_OK,
        responses=problems(404, 409, body=True),
        operation_class=OptionalBodyOperation,
    )
    async def complete(
        self, principal: CurrentPrincipal, session_id: SessionId, data: JSONBody[CompleteRequest | None] = None
    ) -> SessionRead:
        """End the session as completed."""
        summary = data.summary if data else None
        return await service.end(principal.workspace_id, session_id, status=SessionStatus.COMPLETED, summary=summary)

    @post(
        SESSION_ID + "/fail",
        status_code=HTTP_200_OK,
        responses=problems(404, 409, body=True),
        operation_class=OptionalBodyOperation,
    )
    async def fail(
        self, principal: CurrentPrincipal, session_id: SessionId, data: JSONBody[FailRequest | None] = None
    ) -> SessionRead:
        """End the session as failed (the reason becomes final_summary)."""
        reason = data.reason if data else None
        return await service.end(principal.workspace_id, session_id, status=SessionStatus.FAILED, summary=reason)

    @post(SESSION_ID + "/end", status_code=HTTP_200_OK, responses=problems(404, 409, body=True))
    async def end(self, principal: CurrentPrincipal, session_id: SessionId, data: JSONBody[EndRequest]) -> SessionRead:
        """End the session with status completed or failed."""
        return await service.end(
            principal.workspace_id, session_id, status=SessionStatus(data.status), summary=data.summary
        )

    # Work log and artifacts ----------------------------------------------------------------------------------

    @post(
        SESSION_ID + "/actions",
        status_code=HTTP_201_CREATED,
        responses={**problems(404, 409, body=True), **retried(ActionEntry, "The entry already stored under this id")},
    )
    async def log_action(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: SessionId,
        data: JSONBody[ActionCreate],
    ) -> Response[ActionEntry]:
        """Append an action entry (a retried id answers 200 with the stored entry)."""
        entry, created = await service.log_action(principal.workspace_id, session_id, data, settings=_settings(request))
        return _created_or_found(views.work_log_entry(entry), created)

    @post(
        SESSION_ID + "/work-log",
        status_code=HTTP_201_CREATED,
        responses={**problems(404, 409, body=True), **retried(TypedEntry, "The entry already stored under this id")},
    )
    async def log_work(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: SessionId,
        data: JSONBody[WorkLogCreate],
    ) -> Response[TypedEntry]:
        """Append a typed entry (a retried id answers 200 with the stored entry)."""
        entry, created = await service.log_work(principal.workspace_id, session_id, data, settings=_settings(request))
        return _created_or_found(views.work_log_entry(entry), created)

    @post(SESSION_ID + "/work-log/batch", status_code=HTTP_201_CREATED, responses=problems(404, 409, body=True))
    async def log_work_batch(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: SessionId,
        data: JSONBody[WorkLogBatchCreate],
    ) -> BatchResult:
        """Append up to 1,000 typed entries in one atomic update; ids already stored are skipped."""
        outcome = await service.log_work_batch(
            principal.workspace_id, session_id, data.entries, settings=_settings(request)
        )
        return BatchResult(appended=len(outcome.appended), duplicates=outcome.duplicate_count)

    @get(SESSION_ID + "/work-log", responses=problems(404))
    async def work_log(
        self,
        principal: CurrentPrincipal,
        session_id: SessionId,
        type: FromQuery[EntryType | None] = None,
        offset: Offset = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        order: FromQuery[Order] = "asc",
        id_prefix: IdPrefix = None,
        after: AfterAnchor = None,
        before: BeforeAnchor = None,
    ) -> WorkLogPage:
        """A page of the work log, optionally of one entry type, of ids with a prefix, after or before an entry."""
        items, total = await queries.work_log_page(
            principal.workspace_id,
            session_id,
            entry_type=type,
            offset=offset,
            limit=limit,
            order=order,
            id_prefix=id_prefix,
            after=after,
            before=before,
        )
        return WorkLogPage(items=items, total=total)

    @get(SESSION_ID + "/work-log" + ENTRY_ID, responses=problems(404))
    async def work_log_entry(
        self, principal: CurrentPrincipal, session_id: SessionId, entry_id: EntryIdPath
    ) -> WorkLogEntry:
        """One work-log entry by id."""
        return views.work_log_entry(await queries.get_entry(principal.workspace_id, session_id, "work_log", entry_id))

    @delete(SESSION_ID + "/work-log" + ENTRY_ID, status_code=HTTP_204_NO_CONTENT, responses=problems(404))
    async def delete_work_log_entry(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: SessionId,
        entry_id: EntryIdPath,
    ) -> None:
        """Erase one work-log entry (any status); the counters move back with it."""
        await removals.delete_entry(
            principal.workspace_id, session_id, "work_log", entry_id, settings=_settings(request)
        )

    @post(
        SESSION_ID + "/work-log/pop",
        status_code=HTTP_200_OK,
        responses={**problems(404, 409), **no_content("The work log is empty")},
    )
    async def pop_work_log(
        self, request: Request[Any, Any, State], principal: CurrentPrincipal, session_id: SessionId
    ) -> Response[WorkLogEntry | None]:
        """Remove and return the newest work-log entry, atomically (204 when the log is empty)."""
        entry = await removals.pop_newest(principal.workspace_id, session_id, "work_log", settings=_settings(request))
        return _popped(views.work_log_entry(entry) if entry else None)

    @delete(SESSION_ID + "/work-log", status_code=HTTP_204_NO_CONTENT, responses=problems(404))
    async def clear_work_log(
        self, request: Request[Any, Any, State], principal: CurrentPrincipal, session_id: SessionId
    ) -> None:
        """Remove every work-log entry; the session stays, its log counters at zero."""
        await removals.clear(principal.workspace_id, session_id, "work_log", settings=_settings(request))

    @get(SESSION_ID + "/recent-actions", responses=problems(404))
    async def recent_actions(
        self,
        principal: CurrentPrincipal,
        session_id: SessionId,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
    ) -> WorkLogItems:
        """The newest work-log entries, newest first."""
        return WorkLogItems(items=await queries.recent_actions(principal.workspace_id, session_id, limit=limit))

    @post(
        SESSION_ID + "/artifacts",
        status_code=HTTP_201_CREATED,
        responses={**problems(404, 409, body=True), **retried(Artifact, "The artifact already stored under this id")},
    )
    async def record_artifact(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: SessionId,
        data: JSONBody[ArtifactCreate],
    ) -> Response[Artifact]:
        """Record a file the agent touched (a retried id answers 200 with the stored artifact)."""
        entry, created = await service.record_artifact(
            principal.workspace_id, session_id, data, settings=_settings(request)
        )
        return _created_or_found(Artifact.model_validate(entry), created)

    @get(SESSION_ID + "/artifacts", responses=problems(404))
    async def artifacts(
        self,
        principal: CurrentPrincipal,
        session_id: SessionId,
        action: FromQuery[ArtifactAction | None] = None,
        has_blob: Annotated[
            bool, QueryParameter(description="Only the artifacts whose content is stored as a blob.")
        ] = False,
        offset: Offset = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 1000,
    ) -> ArtifactList:
        """The session's artifacts in recorded order, optionally of one action or only those with content."""
        items, total = await queries.artifacts_page(
            principal.workspace_id, session_id, action=action, has_blob=has_blob, offset=offset, limit=limit
        )
        return ArtifactList(items=items, total=total)

    @get(SESSION_ID + "/artifacts" + ENTRY_ID, responses=problems(404))
    async def artifact(self, principal: CurrentPrincipal, session_id: SessionId, entry_id: EntryIdPath) -> Artifact:
        """One artifact by id."""
        return Artifact.model_validate(
            await queries.get_entry(principal.workspace_id, session_id, "artifacts", entry_id)
        )

    @delete(SESSION_ID + "/artifacts" + ENTRY_ID, status_code=HTTP_204_NO_CONTENT, responses=problems(404))
    async def delete_artifact(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: SessionId,
        entry_id: EntryIdPath,
    ) -> None:
        """Erase one artifact (any status); artifact_count moves back with it."""
        await removals.delete_entry(
            principal.workspace_id, session_id, "artifacts", entry_id, settings=_settings(request)
        )

    @post(
        SESSION_ID + "/artifacts/pop",
        status_code=HTTP_200_OK,
        responses={**problems(404, 409), **no_content("No artifact is recorded")},
    )
    async def pop_artifact(
        self, request: Request[Any, Any, State], principal: CurrentPrincipal, session_id: SessionId
    ) -> Response[Artifact | None]:
        """Remove and return the newest artifact, atomically (204 when there is none)."""
        entry = await removals.pop_newest(principal.workspace_id, session_id, "artifacts", settings=_settings(request))
        return _popped(Artifact.model_validate(entry) if entry else None)

    @delete(SESSION_ID + "/artifacts", status_code=HTTP_204_NO_CONTENT, responses=problems(404))
    async def clear_artifacts(
        self, request: Request[Any, Any, State], principal: CurrentPrincipal, session_id: SessionId
    ) -> None:
        """Remove every artifact; the session stays, artifact_count at zero."""
        await removals.clear(principal.workspace_id, session_id, "artifacts", settings=_settings(request))

    # Context and handoff -------------------------------------------------------------------------------------

    @put(SESSION_ID + "/context", responses=problems(404, 409, body=True))
    async def replace_context(
        self, principal: CurrentPrincipal, session_id: SessionId, data: JSONBody[FreeForm]
    ) -> SessionRead:
        """Replace the whole context map."""
        return await service.set_context(principal.workspace_id, session_id, data, replace=True)

    @patch(SESSION_ID + "/context", responses=problems(404, 409, body=True))
    async def merge_context(
        self, principal: CurrentPrincipal, session_id: SessionId, data: JSONBody[FreeForm]
    ) -> SessionRead:
        """Set the given keys of the context map, leaving the others."""
        return await service.set_context(principal.workspace_id, session_id, data, replace=False)

    @post(SESSION_ID + "/handoff", status_code=HTTP_200_OK, responses=problems(404, 409, body=True))
    async def handoff(
        self, principal: CurrentPrincipal, session_id: SessionId, data: JSONBody[HandoffRequest]
    ) -> SessionRead:
        """Leave handoff notes for the next agent and pause the session."""
        return await service.record_handoff(principal.workspace_id, session_id, data)

    @get(SESSION_ID + "/handoff-context", responses={**shaped_as(HandoffContext), **problems(404)})
    async def handoff_context(self, principal: CurrentPrincipal, session_id: SessionId) -> Response[dict[str, Any]]:
        """What the next agent needs to pick the session up."""
        return Response(await queries.handoff_answer(principal.workspace_id, session_id))

    @get(SESSION_ID + "/replay-context", responses={**shaped_as(ReplayContext), **problems(404)})
    async def replay_context(self, principal: CurrentPrincipal, session_id: SessionId) -> Response[dict[str, Any]]:
        """Everything needed to continue the session from its last checkpoint."""
        return Response(await queries.replay_answer(principal.workspace_id, session_id))

    @get(SESSION_ID + "/mcp-context", responses=problems(404))
    async def mcp_context(self, principal: CurrentPrincipal, session_id: SessionId) -> McpContext:
        """The compact context for MCP clients."""
        return await queries.mcp_context(principal.workspace_id, session_id)

    @post(
        SESSION_ID + "/replay",
        status_code=HTTP_201_CREATED,
        responses={**problems(404, body=True), **retried(SessionRead, "The replay this Idempotency-Key already made")},
        operation_class=OptionalBodyOperation,
    )
    async def replay(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: SessionId,
        data: JSONBody[ReplayRequest | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionRead]:
        """Continue the session in a new active one (any status may be replayed)."""
        result = await service.replay_session(
            principal,
            session_id,
            agent_type=data.agent_type if data else None,
            idempotency_key=idempotency_key,
            settings=_settings(request),
        )
        return _created_or_found(result.session, result.created)
