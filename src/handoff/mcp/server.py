"""The handoff MCP server: the session lifecycle as tools, a session's context as a resource, a resume prompt.

:func:`build_server` makes one ``MCPServer`` over any :class:`~handoff.mcp.backend.HandoffBackend`, picked per
call by ``backend_for(ctx)``: ``handoff mcp`` (stdio) passes an ``AsyncHandoffClient``; the service's ``/mcp``
endpoint passes the ``ServiceBackend`` of the request's API key (see ``handoff.mcp.http``).

Each tool answers with a few lines of text (``handoff.mcp.render``) and the service's schema as structured
content (its JSON schema is the tool's output schema). A refused call (unknown session, ended session, a bad
field) is a tool error whose text is the problem: ``404 Not found: session sess_… not found``.
"""

# No ``from __future__ import annotations``: the SDK reads the tools' annotations at registration.

import mimetypes
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult
from pydantic import Field

from handoff import __version__
from handoff.analytics.schemas import HandoffList
from handoff.client.errors import HandoffClientError
from handoff.client.errors import NotFound as ClientNotFound
from handoff.errors import HandoffError
from handoff.errors import NotFound as DomainNotFound
from handoff.mcp import attachments, blob_reads, render
from handoff.mcp.backend import HandoffBackend, problem_text
from handoff.mcp.claim_tools import CLAIM_TOOL_NAMES, register_claim_tools
from handoff.mcp.subscriptions import ConnectionSubscriptions, register_listen
from handoff.mcp.tooling import IDEMPOTENT as _IDEMPOTENT
from handoff.mcp.tooling import READ as _READ
from handoff.mcp.tooling import WRITE as _WRITE
from handoff.mcp.tooling import BackendResolver
from handoff.mcp.tooling import answer as _answer
from handoff.mcp.tooling import guard as _guard
from handoff.sessions.schemas import (
    ActionEntry,
    Artifact,
    HandoffContext,
    ReplayContext,
    SessionRead,
    TypedEntry,
)

TOOL_NAMES = (
    "start_session",
    "log_work",
    "log_action",
    "record_artifact",
    "attach_file",
    "update_context",
    "handoff",
    "get_handoff_context",
    "get_replay_context",
    "replay_session",
    "complete_session",
    "fail_session",
    "list_waiting_handoffs",
    *CLAIM_TOOL_NAMES,
)

INSTRUCTIONS = """\
handoff is the shared working memory of agents. Open a session with start_session when you begin a task and keep
its session_id. Record what you do as you go: log_work (type checkpoint after each finished step, decision for
choices, error for failures), log_action for commands, record_artifact for files you create, modify or delete,
update_context for facts the next agent needs. When you stop before the task is done, call handoff with a summary,
next steps and blockers; when it is done, complete_session (or fail_session). To pick up someone else's work:
list_waiting_handoffs, then replay_session on one of them, and read get_replay_context/get_handoff_context.
When several agents share a queue of handoffs, claim_handoff instead: it takes the oldest waiting one for you alone
and opens its replay session; work in that session (every write renews the lease, heartbeat_claim during long
silences), complete_session when done, or release_claim to give it back."""

SessionId = Annotated[
    str,
    Field(min_length=1, max_length=255, description="The session's id, as start_session or replay_session gave it."),
]
EntryId = Annotated[
    str | None,
    Field(
        description="Optional id of your choosing (1-64 of A-Z a-z 0-9 _ . : -); repeating a call with the same id "
        "stores the entry once."
    ),
]
FreeFormArg = Annotated[dict[str, Any] | None, Field(description="Optional JSON object of extra structured data.")]
BlobIdArg = Annotated[
    str | None,
    Field(
        description="Optional blob of this session holding the entry's content (a big output, a checkpoint's "
        "state, a file's bytes), as attach_file's artifact names it (blob_...)."
    ),
]


def build_server(  # noqa: PLR0915 - one nested function per tool
    backend_for: BackendResolver,
    *,
    name: str = "handoff",
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO",
    local_files: bool = False,
    max_resource_blob_bytes: int = blob_reads.MAX_RESOURCE_BLOB_BYTES,
    connection_subscriptions: ConnectionSubscriptions | None = None,
) -> MCPServer:
    """An MCP server with the handoff tools, the session and blob resources and the resume prompt.

    ``local_files``: ``attach_file`` may read the file at its ``path`` when no ``content`` is given. Only for
    ``handoff mcp`` (stdio), which runs where the agent's files are; the service never reads its own disk for an
    agent. ``max_resource_blob_bytes``: the largest blob the blob resource serves (one message, not a stream).
    The session resource can be subscribed to with ``subscriptions/listen`` everywhere, and with
    ``resources/subscribe`` where ``connection_subscriptions`` keeps the subscriptions (``handoff mcp``): see
    ``handoff.mcp.subscriptions``.
    """
    # subscriptions=False: not the SDK's listen handler (one bus for every workspace) but ours.
    server: MCPServer = MCPServer(
        name, instructions=INSTRUCTIONS, version=__version__, log_level=log_level, subscriptions=False
    )
    register_listen(server, backend_for)
    if connection_subscriptions is not None:
        connection_subscriptions.register(server, backend_for)

    @server.tool(annotations=_WRITE)
    async def start_session(
        *,
        ctx: Context,
        agent_type: Annotated[str | None, Field(description="What kind of agent you are, e.g. 'coder'.")] = None,
        plan: Annotated[str | None, Field(description="Slug of a plan of the workspace this work belongs to.")] = None,
        context_summary: Annotated[
            dict[str, Any] | None, Field(description="What you know at the start: goal, constraints, links.")
        ] = None,
        external_id: Annotated[
            str | None,
            Field(description="Your own key for this session (e.g. a thread id); starting again with it returns it."),
        ] = None,
    ) -> Annotated[CallToolResult, SessionRead]:
        """Open a new work session and get its session_id. Call this once when you begin a task."""
        session = await _guard(
            backend_for(ctx).create_session(
                agent_type=agent_type, plan=plan, context_summary=context_summary, external_id=external_id
            )
        )
        return _answer(render.started(session), session)

    @server.tool(annotations=_IDEMPOTENT)
    async def log_work(
        *,
        ctx: Context,
        session_id: SessionId,
        message: Annotated[str, Field(min_length=1, description="What happened, in a sentence.")],
        type: Annotated[
            Literal["info", "warning", "error", "success", "checkpoint", "decision"],
            Field(description="checkpoint after a finished step, decision for a choice made, error for a failure."),
        ] = "info",
        data: FreeFormArg = None,
        id: EntryId = None,
        blob_id: BlobIdArg = None,
    ) -> Annotated[CallToolResult, TypedEntry]:
        """Add an entry to the session's work log. Checkpoints and decisions are what a replay resumes from."""
        entry = await _guard(
            backend_for(ctx).log_work(session_id, message, type=type, data=data, id=id, blob_id=blob_id)
        )
        return _answer(render.logged(session_id, entry), entry)

    @server.tool(annotations=_IDEMPOTENT)
    async def log_action(
        *,
        ctx: Context,
        session_id: SessionId,
        action: Annotated[str, Field(min_length=1, description="The action taken, e.g. 'ran pytest'.")],
        details: FreeFormArg = None,
        id: EntryId = None,
        blob_id: BlobIdArg = None,
    ) -> Annotated[CallToolResult, ActionEntry]:
        """Record an action you took (a command run, a call made) in the session's work log."""
        entry = await _guard(backend_for(ctx).log_action(session_id, action, details=details, id=id, blob_id=blob_id))
        return _answer(render.logged(session_id, entry), entry)

    @server.tool(annotations=_IDEMPOTENT)
    async def record_artifact(
        *,
        ctx: Context,
        session_id: SessionId,
        path: Annotated[str, Field(min_length=1, description="The file's path (or another artifact's locator).")],
        action: Annotated[
            Literal["created", "modified", "deleted"], Field(description="What you did to it.")
        ] = "modified",
        metadata: FreeFormArg = None,
        id: EntryId = None,
        blob_id: BlobIdArg = None,
    ) -> Annotated[CallToolResult, Artifact]:
        """Record a file you created, modified or deleted, so the next agent knows what changed."""
        artifact = await _guard(
            backend_for(ctx).record_artifact(session_id, path, action=action, metadata=metadata, id=id, blob_id=blob_id)
        )
        return _answer(render.recorded(session_id, artifact), artifact)

    @server.tool(annotations=_WRITE)
    async def attach_file(
        *,
        ctx: Context,
        session_id: SessionId,
        path: Annotated[str, Field(min_length=1, description="The file's path, recorded as the artifact's path.")],
        content: Annotated[
            str | None,
            Field(description="The file's text. Leave it out to send the file at path (handoff mcp on your machine)."),
        ] = None,
        action: Annotated[
            Literal["created", "modified", "deleted"], Field(description="What you did to it.")
        ] = "modified",
        content_type: Annotated[
            str | None, Field(description="Its media type (default: guessed from path; text/plain for content).")
        ] = None,
        metadata: FreeFormArg = None,
        id: EntryId = None,
    ) -> Annotated[CallToolResult, Artifact]:
        """Record a file you touched with its content, so the next agent reads the file itself, not just its path."""
        backend = backend_for(ctx)
        if content is None and not local_files:
            raise ToolError("422 Invalid: give the file's text as content (this server cannot read your files)")
        source = blob_source(path, content)
        blob = await _guard(
            backend.upload_blob(session_id, source, content_type=blob_type(path, content, content_type))
        )
        try:
            artifact = await _guard(
                backend.record_artifact(session_id, path, action=action, metadata=metadata, id=id, blob_id=blob.blob_id)
            )
        except ToolError:
            # The artifact was refused (its id reused, the session ended meanwhile): its content goes with it.
            await _guard(backend.delete_blob(session_id, blob.blob_id))
            stored = None if id is None else await attachments.recorded(backend, session_id, id)
            if stored is None or id is None:
                raise
            same = await attachments.records_same_file(
                backend, stored, session_id=session_id, path=path, action=action, metadata=metadata, uploaded=blob
            )
            if not same:
                raise ToolError(attachments.reused_id(id)) from None
            # A retry: the artifact and the blob stored the first time answer it.
            artifact, blob = stored, blob.model_copy(update={"blob_id": stored.blob_id})
        return _answer(render.attached(session_id, artifact, blob), artifact)

    @server.tool(annotations=_IDEMPOTENT)
    async def update_context(
        *,
        ctx: Context,
        session_id: SessionId,
        context: Annotated[dict[str, Any], Field(description="Keys and values to keep in the session's context.")],
        replace: Annotated[
            bool, Field(description="false (default): set these keys, keep the others; true: replace the whole map.")
        ] = False,
    ) -> Annotated[CallToolResult, SessionRead]:
        """Keep facts in the session's context map (what the next agent inherits)."""
        session = await _guard(backend_for(ctx).update_context(session_id, context, replace=replace))
        return _answer(render.context_updated(session, context.keys(), replace=replace), session)

    @server.tool(annotations=_IDEMPOTENT)
    async def handoff(
        *,
        ctx: Context,
        session_id: SessionId,
        summary: Annotated[str, Field(min_length=1, description="Where the work stands, for the next agent.")],
        next_steps: Annotated[list[str] | None, Field(description="What to do next, in order.")] = None,
        blockers: Annotated[list[str] | None, Field(description="What stops progress.")] = None,
        context_for_next: Annotated[
            dict[str, Any] | None, Field(description="Anything else the next agent needs, as a JSON object.")
        ] = None,
    ) -> Annotated[CallToolResult, SessionRead]:
        """Leave handoff notes and pause the session, so another agent can continue it."""
        session = await _guard(
            backend_for(ctx).handoff(
                session_id, summary, next_steps=next_steps, blockers=blockers, context_for_next=context_for_next
            )
        )
        return _answer(render.handed_off(session), session)

    @server.tool(annotations=_READ)
    async def get_handoff_context(*, ctx: Context, session_id: SessionId) -> Annotated[CallToolResult, HandoffContext]:
        """What the next agent needs from a session: handoff notes, context, recent work, files touched."""
        value = await _guard(backend_for(ctx).get_handoff_context(session_id))
        return _answer(render.handoff_context(value), value)

    @server.tool(annotations=_READ)
    async def get_replay_context(*, ctx: Context, session_id: SessionId) -> Annotated[CallToolResult, ReplayContext]:
        """A session's progress: checkpoints, decisions, errors, files by action, handoff notes."""
        value = await _guard(backend_for(ctx).get_replay_context(session_id))
        return _answer(render.replay_context(value), value)

    @server.tool(annotations=_WRITE)
    async def replay_session(
        *,
        ctx: Context,
        session_id: SessionId,
        agent_type: Annotated[
            str | None, Field(description="Your agent type (default: the original session's).")
        ] = None,
    ) -> Annotated[CallToolResult, SessionRead]:
        """Continue a session (any status) in a new active one that inherits its context; returns the new id."""
        session = await _guard(backend_for(ctx).replay_session(session_id, agent_type=agent_type))
        return _answer(render.replayed(session, session_id), session)

    @server.tool(annotations=_WRITE)
    async def complete_session(
        *,
        ctx: Context,
        session_id: SessionId,
        summary: Annotated[str | None, Field(description="What was achieved.")] = None,
    ) -> Annotated[CallToolResult, SessionRead]:
        """End the session as completed. It accepts no more writes afterwards."""
        session = await _guard(backend_for(ctx).complete_session(session_id, summary))
        return _answer(render.ended(session), session)

    @server.tool(annotations=_WRITE)
    async def fail_session(
        *,
        ctx: Context,
        session_id: SessionId,
        reason: Annotated[str | None, Field(description="Why the work failed.")] = None,
    ) -> Annotated[CallToolResult, SessionRead]:
        """End the session as failed, with the reason. It accepts no more writes afterwards."""
        session = await _guard(backend_for(ctx).fail_session(session_id, reason))
        return _answer(render.ended(session), session)

    @server.tool(annotations=_READ)
    async def list_waiting_handoffs(
        *,
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many, oldest waiting first.")] = 20,
    ) -> Annotated[CallToolResult, HandoffList]:
        """Paused sessions with handoff notes that nobody has picked up yet (replay_session takes one over)."""
        value = await _guard(backend_for(ctx).list_waiting_handoffs(limit=limit))
        return _answer(render.waiting_handoffs(value.items, limit=limit), value)

    @server.resource(
        "handoff://sessions/{session_id}",
        name="session",
        title="A handoff session",
        description="A session's compact MCP context: status, counts, context summary and handoff notes.",
        mime_type="application/json",
    )
    async def session_resource(session_id: str, ctx: Context) -> str:
        try:
            value = await backend_for(ctx).get_mcp_context(session_id)
        except (ClientNotFound, DomainNotFound) as exc:
            raise ResourceNotFoundError(problem_text(exc)) from exc
        except (HandoffClientError, HandoffError) as exc:
            raise ResourceError(problem_text(exc)) from exc
        return render.mcp_context(value)

    @server.resource(
        "handoff://sessions/{session_id}/blobs/{blob_id}",
        name="blob",
        title="A blob of a handoff session",
        description=(
            "The bytes of a blob (a file's content an artifact or entry refers to by blob_id), for blobs up to "
            f"{max_resource_blob_bytes:,} bytes; a larger one is an error: download it from the REST API."
        ),
        mime_type="application/octet-stream",
    )
    async def blob_resource(session_id: str, blob_id: str, ctx: Context) -> bytes:
        try:
            return await blob_reads.read_blob(backend_for(ctx), session_id, blob_id, limit=max_resource_blob_bytes)
        except (ClientNotFound, DomainNotFound) as exc:
            raise ResourceNotFoundError(problem_text(exc)) from exc
        except (HandoffClientError, HandoffError) as exc:
            raise ResourceError(problem_text(exc)) from exc
        except blob_reads.BlobTooLargeForResource as exc:
            raise ResourceError(str(exc)) from exc

    @server.prompt(
        title="Resume from a handoff",
        description="Instructions for the agent that takes over a handed-off session.",
    )
    async def resume_from_handoff(
        session_id: Annotated[str, Field(description="The handed-off session.")], ctx: Context
    ) -> str:
        try:
            value = await backend_for(ctx).get_handoff_context(session_id)
        except (HandoffClientError, HandoffError) as exc:
            # An MCPError reaches the client as it is; anything else would be "Internal server error".
            raise MCPError(code=INVALID_PARAMS, message=problem_text(exc)) from exc
        return render.resume_instructions(value)

    register_claim_tools(server, backend_for)
    return server


def blob_source(path: str, content: str | None) -> bytes | Path:
    """What ``attach_file`` uploads: the text given (UTF-8), else the local file at ``path``, streamed."""
    return content.encode() if content is not None else Path(path).expanduser()


def blob_type(path: str, content: str | None, given: str | None) -> str:
    """The media type ``attach_file`` stores: the one given, else UTF-8 text for content, else a guess by name."""
    if given:
        return given
    if content is not None:
        return "text/plain; charset=utf-8"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def fixed_backend(backend: HandoffBackend) -> BackendResolver:
    """A resolver that always answers ``backend`` (stdio: one client for the whole process)."""
    return lambda _ctx: backend
