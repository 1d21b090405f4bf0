"""What the sync and the async client share: each route as a request description, and the retry policy.

The clients do no HTTP logic of their own. Every method builds a :class:`Call` here (method, path, body,
headers, how to read the answer), and :func:`execute` runs it as a *sans-I/O* generator: it yields a
:class:`RequestSpec` to send or a :class:`Sleep` to wait, receives the response (or the transport error), and
decides: return the parsed schema, retry, or raise the typed error. ``HandoffClient`` drives it with
``httpx.Client`` and ``time.sleep``, ``AsyncHandoffClient`` with ``httpx.AsyncClient`` and ``anyio.sleep``, so
the two cannot drift apart.

Why a retry can never store anything twice: every call is made retry-safe when it is built, before the first
attempt. Appends carry an entry ``id`` (generated when the caller gives none; the service stores an id once),
creation and replay an ``Idempotency-Key`` (generated likewise), and everything else is idempotent by nature
(reads, ``PUT``/``PATCH`` of the context, pause/resume/handoff). The few operations whose repeat is refused once
the first attempt has already succeeded (complete/fail/end answer 409 on an ended session, a delete 404, a plan
create 409) are *settled*: after an attempt whose fate is unknown, such a refusal is checked with one read, and
when the read shows the work done, the call returns it instead of raising.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
import pydantic_core
from pydantic import BaseModel, TypeAdapter

from handoff.analytics.schemas import Lineage
from handoff.blobs.schemas import BlobPage, BlobRead
from handoff.claims.schemas import ClaimCreated, ClaimList, ClaimRead, Heartbeat
from handoff.client.errors import HandoffClientError, Unavailable, error_from_problem
from handoff.plans.schemas import PlanList, PlanRead
from handoff.sessions.schemas import (
    ActionEntry,
    Artifact,
    ArtifactList,
    BatchResult,
    HandoffContext,
    McpContext,
    ReplayContext,
    SessionList,
    SessionPage,
    SessionRead,
    TypedEntry,
    WorkLogCreate,
    WorkLogEntry,
    WorkLogItems,
    WorkLogPage,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_TIMEOUT_SECONDS = 30.0
#: How much of a file an upload reads at a time (GridFS's chunk size is 255 KiB).
UPLOAD_CHUNK_BYTES = 256 * 1024
"""Longer than the service's own wait for a primary (15 s), so a failover answers 503 instead of timing out."""

RETRYABLE_STATUSES = frozenset({502, 503, 504})
"""The service (or a proxy in front of it) cannot serve right now; every call is safe to repeat."""

SessionStatusName = Literal["active", "paused", "completed", "failed"]
EntryTypeName = Literal["info", "warning", "error", "success", "checkpoint", "decision"]
ArtifactActionName = Literal["created", "modified", "deleted"]


# Policy ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff for 502/503/504 answers and failed connections.

    Attempt ``n`` (from 0) waits ``backoff_base * 2**n`` seconds, with jitter, capped at ``backoff_max``; a
    ``Retry-After`` header from the service is honoured within the same cap. ``max_retries=0`` disables retries.
    """

    max_retries: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("max_retries, backoff_base and backoff_max must not be negative")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        exponential = self.backoff_base * (2.0**attempt)
        jittered = exponential * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
        if retry_after is not None:
            jittered = max(jittered, retry_after)
        return min(self.backoff_max, jittered)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What both clients are configured with."""

    base_url: str
    api_key: str | None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = "handoff-client"

    @property
    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


# The protocol between execute() and a driver -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One HTTP request, before a client turns it into an ``httpx.Request``."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    has_body: bool = False
    headers: Mapping[str, str] | None = None
    #: A raw body (bytes or an iterable of them, sent as it is read): a blob's content.
    content: Any = None

    def build(self, http: httpx.Client | httpx.AsyncClient, options: ClientOptions) -> httpx.Request:
        """The ``httpx.Request`` for this spec: absolute URL, the client's headers, this call's headers."""
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        return http.build_request(
            self.method,
            options.base_url + self.path,
            params=params or None,
            json=pydantic_core.to_jsonable_python(self.body) if self.has_body else None,
            content=self.content,
            headers={**options.headers, **(self.headers or {})},
            timeout=options.timeout,
        )


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds before the next request."""

    seconds: float


Step = RequestSpec | Sleep
Outcome = httpx.Response | httpx.TransportError | None


@dataclass(frozen=True)
class Settle(Generic[T]):
    """How to tell, after an attempt of unknown fate, that a refusal means an earlier attempt did the work.

    When the retried call is refused with ``status``, ``confirm`` (a read) is run; if ``accept`` holds for its
    result, that result is the call's answer. With no ``confirm``, ``value`` is the answer (a delete's None).
    """

    status: int
    confirm: Call[T] | None = None
    accept: Callable[[T], bool] = lambda _: True
    value: Any = None


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request and how to read its answer."""

    spec: RequestSpec
    parse: Callable[[httpx.Response], T]
    settle: Settle[T] | None = None
    retry: bool = True


@dataclass(frozen=True, slots=True)
class _Settled(Generic[T]):
    value: T


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _reached_server(exc: httpx.TransportError) -> bool:
    """Whether the request may have reached the service (so its effect is unknown)."""
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _retryable(exc: httpx.TransportError) -> bool:
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def response_error(response: httpx.Response) -> HandoffClientError:
    """The typed exception for an error response."""
    body: Any = None
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
    return error_from_problem(
        response.status_code, body, fallback_text=response.text, retry_after=_retry_after(response)
    )


def execute(call: Call[T], policy: RetryPolicy) -> Generator[Step, Outcome, T]:
    """Run ``call``: yield requests and sleeps, receive responses or transport errors, return the answer."""
    attempt = 0
    uncertain = False  # an earlier attempt may have been applied
    max_retries = policy.max_retries if call.retry else 0
    while True:
        outcome = yield call.spec
        if isinstance(outcome, httpx.Response):
            status = outcome.status_code
            if status < 300:
                return call.parse(outcome)
            if status in RETRYABLE_STATUSES and attempt < max_retries:
                yield Sleep(policy.delay(attempt, _retry_after(outcome)))
                attempt += 1
                uncertain = True
                continue
            if uncertain and call.settle is not None and status == call.settle.status:
                settled = yield from _settle(call.settle, policy)
                if settled is not None:
                    return settled.value
            raise response_error(outcome)
        if not isinstance(outcome, httpx.TransportError):  # pragma: no cover - a driver bug
            raise TypeError(f"execute() expects a response or a transport error, got {outcome!r}")
        if not _retryable(outcome):
            raise HandoffClientError(f"{type(outcome).__name__}: {outcome}") from outcome
        if attempt >= max_retries:
            where = f"{call.spec.method} {call.spec.path}"
            raise Unavailable(
                f"{where} failed after {attempt + 1} attempt(s): {type(outcome).__name__}: {outcome}"
            ) from outcome
        uncertain = uncertain or _reached_server(outcome)
        yield Sleep(policy.delay(attempt))
        attempt += 1


def _settle(settle: Settle[T], policy: RetryPolicy) -> Generator[Step, Outcome, _Settled[T] | None]:
    if settle.confirm is None:
        return _Settled(settle.value)
    try:
        value = yield from execute(settle.confirm, policy)
    except HandoffClientError:
        return None
    return _Settled(value) if settle.accept(value) else None


# Reading answers ---------------------------------------------------------------------------------------------


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: cls.model_validate_json(response.content)


def _nothing(_: httpx.Response) -> None:
    return None


def _json(response: httpx.Response) -> dict[str, Any]:
    value: dict[str, Any] = response.json()
    return value


# Building requests -------------------------------------------------------------------------------------------


def new_entry_id() -> str:
    """An entry id for an append the caller gave none: fixed before the first attempt, so retries reuse it."""
    return uuid.uuid4().hex


def new_idempotency_key() -> str:
    """An ``Idempotency-Key`` for a create or replay the caller gave none."""
    return f"hc-{uuid.uuid4().hex}"


def _seg(value: str) -> str:
    """A path segment, escaped so an id can never change the route."""
    return quote(value, safe="")


def _session(session_id: str, suffix: str = "") -> str:
    return f"/v1/sessions/{_seg(session_id)}{suffix}"


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _post(path: str, body: Any = None, *, headers: Mapping[str, str] | None = None) -> RequestSpec:
    return RequestSpec("POST", path, body=body if body is not None else {}, has_body=True, headers=headers)


def _get(path: str, **params: Any) -> RequestSpec:
    return RequestSpec("GET", path, params=params or None)


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


# Sessions


def create_session(
    *,
    agent_type: str | None,
    plan: str | None,
    context_summary: Mapping[str, Any] | None,
    external_id: str | None,
    idempotency_key: str | None,
) -> Call[SessionRead]:
    body = _body(agent_type=agent_type, plan=plan, context_summary=context_summary, external_id=external_id)
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    return Call(_post("/v1/sessions", body, headers=headers), _model(SessionRead))


def list_sessions(
    *,
    status: str | None,
    agent_type: str | None,
    plan: str | None,
    external_id: str | None,
    limit: int,
    cursor: str | None,
) -> Call[SessionPage]:
    spec = _get(
        "/v1/sessions",
        status=status,
        agent_type=agent_type,
        plan=plan,
        external_id=external_id,
        limit=limit,
        cursor=cursor,
    )
    return Call(spec, _model(SessionPage))


def get_session(session_id: str) -> Call[SessionRead]:
    return Call(_get(_session(session_id)), _model(SessionRead))


def delete_session(session_id: str) -> Call[None]:
    return Call(RequestSpec("DELETE", _session(session_id)), _nothing, settle=Settle(status=404, value=None))


def transition(session_id: str, operation: Literal["touch", "pause", "resume"]) -> Call[SessionRead]:
    return Call(_post(_session(session_id, f"/{operation}")), _model(SessionRead))


def end_session(
    session_id: str, *, status: Literal["completed", "failed"], summary: str | None, route: str
) -> Call[SessionRead]:
    """``/complete``, ``/fail`` or ``/end``; a retry refused because the first attempt ended it is settled."""
    body: dict[str, Any]
    if route == "complete":
        body = _body(summary=summary)
    elif route == "fail":
        body = _body(reason=summary)
    else:
        body = _body(status=status, summary=summary)
    settle: Settle[SessionRead] = Settle(
        status=409,
        confirm=get_session(session_id),
        accept=lambda session: session.status == status and session.final_summary == summary,
    )
    return Call(_post(_session(session_id, f"/{route}"), body), _model(SessionRead), settle=settle)


# Work log and artifacts


def log_action(
    session_id: str, *, action: str, details: Mapping[str, Any] | None, id: str | None, blob_id: str | None = None
) -> Call[ActionEntry]:
    body = _body(action=action, details=details, id=id or new_entry_id(), blob_id=blob_id)
    return Call(_post(_session(session_id, "/actions"), body), _model(ActionEntry))


def log_work(
    session_id: str,
    *,
    message: str,
    type: str | None,
    data: Mapping[str, Any] | None,
    id: str | None,
    blob_id: str | None = None,
) -> Call[TypedEntry]:
    body = _body(message=message, type=type, data=data, id=id or new_entry_id(), blob_id=blob_id)
    return Call(_post(_session(session_id, "/work-log"), body), _model(TypedEntry))


def log_work_batch(session_id: str, entries: Sequence[WorkLogCreate | Mapping[str, Any]]) -> Call[BatchResult]:
    prepared: list[dict[str, Any]] = []
    for entry in entries:
        item = entry.model_dump(mode="json", exclude_none=True) if isinstance(entry, BaseModel) else dict(entry)
        item["id"] = item.get("id") or new_entry_id()
        prepared.append(item)
    return Call(_post(_session(session_id, "/work-log/batch"), {"entries": prepared}), _model(BatchResult))


def get_work_log(
    session_id: str,
    *,
    type: str | None,
    offset: int,
    limit: int,
    order: Literal["asc", "desc"],
    id_prefix: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> Call[WorkLogPage]:
    spec = _get(
        _session(session_id, "/work-log"),
        type=type,
        offset=offset,
        limit=limit,
        order=order,
        id_prefix=id_prefix,
        after=after,
        before=before,
    )
    return Call(spec, _model(WorkLogPage))


LogKind = Literal["work-log", "artifacts"]


_WORK_LOG_ENTRY: TypeAdapter[WorkLogEntry] = TypeAdapter(WorkLogEntry)


def work_log_entry(response: httpx.Response) -> WorkLogEntry:
    """A work-log entry of either shape, as the entry routes answer it."""
    return _WORK_LOG_ENTRY.validate_json(response.content)


def artifact(response: httpx.Response) -> Artifact:
    return Artifact.model_validate_json(response.content)


def get_entry(session_id: str, kind: LogKind, entry_id: str, parse: Callable[[httpx.Response], T]) -> Call[T]:
    return Call(_get(_session(session_id, f"/{kind}/{_seg(entry_id)}")), parse)


def delete_entry(session_id: str, kind: LogKind, entry_id: str) -> Call[None]:
    """A retried delete whose first attempt landed meets a 404: the entry is gone, which is what was asked."""
    spec = RequestSpec("DELETE", _session(session_id, f"/{kind}/{_seg(entry_id)}"))
    return Call(spec, _nothing, settle=Settle(status=404))


def pop_entry(session_id: str, kind: LogKind, parse: Callable[[httpx.Response], T]) -> Call[T | None]:
    """Not retried: a pop whose answer was lost removed an entry nobody saw, and a retry would remove another."""
    return Call(
        _post(_session(session_id, f"/{kind}/pop")),
        lambda response: None if response.status_code == 204 else parse(response),
        retry=False,
    )


def clear_entries(session_id: str, kind: LogKind) -> Call[None]:
    return Call(RequestSpec("DELETE", _session(session_id, f"/{kind}")), _nothing)


def recent_actions(session_id: str, *, limit: int) -> Call[list[WorkLogEntry]]:
    return Call(
        _get(_session(session_id, "/recent-actions"), limit=limit),
        lambda response: WorkLogItems.model_validate_json(response.content).items,
    )


def record_artifact(
    session_id: str,
    *,
    path: str,
    action: str | None,
    metadata: Mapping[str, Any] | None,
    id: str | None,
    blob_id: str | None = None,
) -> Call[Artifact]:
    body = _body(path=path, action=action, metadata=metadata, id=id or new_entry_id(), blob_id=blob_id)
    return Call(_post(_session(session_id, "/artifacts"), body), _model(Artifact))


def list_artifacts(session_id: str, *, action: str | None, offset: int = 0, limit: int = 1000) -> Call[list[Artifact]]:
    return Call(
        _get(_session(session_id, "/artifacts"), action=action, offset=offset, limit=limit),
        lambda response: ArtifactList.model_validate_json(response.content).items,
    )


# Blobs


def upload_blob(session_id: str, content: Any, *, content_type: str | None) -> Call[BlobRead]:
    """An upload is never retried: each POST stores a new blob, so a retry after a lost answer would store two."""
    headers = {"Content-Type": content_type or "application/octet-stream"}
    spec = RequestSpec("POST", _session(session_id, "/blobs"), content=content, headers=headers)
    return Call(spec, _model(BlobRead), retry=False)


def download_blob(session_id: str, blob_id: str) -> Call[httpx.Response]:
    """The answer itself, open: the client reads its body as a stream (see ``stream`` in ``_async.py``)."""
    return Call(_get(_session(session_id, f"/blobs/{_seg(blob_id)}")), lambda response: response)


def list_blobs(session_id: str, *, offset: int, limit: int) -> Call[BlobPage]:
    return Call(_get(_session(session_id, "/blobs"), offset=offset, limit=limit), _model(BlobPage))


def delete_blob(session_id: str, blob_id: str) -> Call[None]:
    spec = RequestSpec("DELETE", _session(session_id, f"/blobs/{_seg(blob_id)}"))
    return Call(spec, _nothing, settle=Settle(status=404, value=None))


# Context, handoff, replay


def update_context(session_id: str, context: Mapping[str, Any], *, replace: bool) -> Call[SessionRead]:
    spec = RequestSpec("PUT" if replace else "PATCH", _session(session_id, "/context"), body=context, has_body=True)
    return Call(spec, _model(SessionRead))


def handoff(
    session_id: str,
    *,
    summary: str,
    next_steps: Sequence[str] | None,
    blockers: Sequence[str] | None,
    context_for_next: Mapping[str, Any] | None,
) -> Call[SessionRead]:
    body = _body(
        summary=summary,
        next_steps=list(next_steps) if next_steps is not None else None,
        blockers=list(blockers) if blockers is not None else None,
        context_for_next=context_for_next,
    )
    return Call(_post(_session(session_id, "/handoff"), body), _model(SessionRead))


def get_handoff_context(session_id: str) -> Call[HandoffContext]:
    return Call(_get(_session(session_id, "/handoff-context")), _model(HandoffContext))


def get_replay_context(session_id: str) -> Call[ReplayContext]:
    return Call(_get(_session(session_id, "/replay-context")), _model(ReplayContext))


def get_mcp_context(session_id: str) -> Call[McpContext]:
    return Call(_get(_session(session_id, "/mcp-context")), _model(McpContext))


def replay_session(session_id: str, *, agent_type: str | None, idempotency_key: str | None) -> Call[SessionRead]:
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    spec = _post(_session(session_id, "/replay"), _body(agent_type=agent_type), headers=headers)
    return Call(spec, _model(SessionRead))


# Handoff claims


def claim_handoff(*, agent_type: str | None, plan: str | None, lease_seconds: int | None) -> Call[ClaimCreated | None]:
    """Not retried: a claim whose answer was lost holds a handoff nobody works on (until its lease runs out)."""
    body = _body(agent_type=agent_type, plan=plan, lease_seconds=lease_seconds)
    return Call(
        _post("/v1/handoffs/claim", body),
        lambda response: None if response.status_code == 204 else ClaimCreated.model_validate_json(response.content),
        retry=False,
    )


def list_claims(*, state: str | None, limit: int, cursor: str | None) -> Call[ClaimList]:
    return Call(_get("/v1/claims", **_body(state=state, limit=limit, cursor=cursor)), _model(ClaimList))


def get_claim(claim_id: str) -> Call[ClaimRead]:
    return Call(_get(f"/v1/claims/{_seg(claim_id)}"), _model(ClaimRead))


def heartbeat_claim(claim_id: str) -> Call[Heartbeat]:
    return Call(_post(f"/v1/claims/{_seg(claim_id)}/heartbeat"), _model(Heartbeat))


def release_claim(claim_id: str, *, reason: str | None) -> Call[ClaimRead]:
    """Not retried: a repeat of a release that landed would meet a 409."""
    return Call(_post(f"/v1/claims/{_seg(claim_id)}/release", _body(reason=reason)), _model(ClaimRead), retry=False)


# Plans


def create_plan(
    *,
    slug: str,
    title: str,
    description: str | None,
    phases: Sequence[Mapping[str, Any] | BaseModel] | None,
    current_phase: str | None,
) -> Call[PlanRead]:
    body = _body(slug=slug, title=title, description=description, phases=phases, current_phase=current_phase)
    # A retry refused with 409 after an attempt of unknown fate: the plan is there, most likely from that attempt.
    settle: Settle[PlanRead] = Settle(status=409, confirm=get_plan(slug), accept=lambda plan: plan.title == title)
    return Call(_post("/v1/plans", body), _model(PlanRead), settle=settle)


def list_plans() -> Call[list[PlanRead]]:
    return Call(_get("/v1/plans"), lambda response: PlanList.model_validate_json(response.content).items)


def get_plan(slug: str) -> Call[PlanRead]:
    return Call(_get(f"/v1/plans/{_seg(slug)}"), _model(PlanRead))


def update_plan(slug: str, *, title: str | None, description: str | None, current_phase: str | None) -> Call[PlanRead]:
    body = _body(title=title, description=description, current_phase=current_phase)
    return Call(RequestSpec("PATCH", f"/v1/plans/{_seg(slug)}", body=body, has_body=True), _model(PlanRead))


def set_task_status(slug: str, *, phase: str, task: str, status: str) -> Call[PlanRead]:
    body = {"phase": phase, "task": task, "status": status}
    return Call(RequestSpec("PATCH", f"/v1/plans/{_seg(slug)}/tasks", body=body, has_body=True), _model(PlanRead))


def list_plan_sessions(slug: str) -> Call[list[SessionRead]]:
    return Call(
        _get(f"/v1/plans/{_seg(slug)}/sessions"),
        lambda response: SessionList.model_validate_json(response.content).items,
    )


# Analytics


def analytics(name: str, answer: type[M], **params: Any) -> Call[M]:
    """``GET /v1/analytics/<name>``; ``since``/``until`` may be datetimes (sent as ISO 8601) or strings."""
    converted = {key: _iso(value) if isinstance(value, datetime) else value for key, value in params.items()}
    return Call(_get(f"/v1/analytics/{name}", **converted), _model(answer))


def lineage(session_id: str) -> Call[Lineage]:
    return Call(_get(f"/v1/analytics/lineage/{_seg(session_id)}"), _model(Lineage))


# Health


def health(path: Literal["/healthz", "/readyz"]) -> Call[dict[str, Any]]:
    """Probes answer as they are (a readiness 503 is the answer, not something to wait out)."""
    return Call(_get(path), _json, retry=False)
