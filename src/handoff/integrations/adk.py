"""Google ADK sessions kept in handoff: ``HandoffSessionService``, a ``BaseSessionService``.

Layout. An ADK session (``app_name``, ``user_id``, ``id``) is one handoff session, ``external_id`` derived from
the three, ``agent_type`` ``adk:<app_name>`` (so a listing is the service's indexed listing of one app). Each
event is an entry ``ev.<event id>`` whose message is what a person reads (``user: hi``, ``tool call
get_weather``, an ``error`` entry for an event with an error code), the event's JSON (split into parts when
large, as :mod:`handoff.integrations._entries` does) and its non-``temp:`` ``state_delta`` in its data: that
entry is the one atomic write of ``append_event``, event and delta together.

State. ``temp:`` keys are never stored. Session keys are copied into the session's context (``adk_state``)
after the event is stored, with the number of events they fold; a copy that does not match the log's count
(a writer that died between the two writes) is rebuilt from the events' deltas on the next read. ``app:`` and
``user:`` keys live in the workspace-level store: one handoff session per app (``adk-app:<app>``) and one per
app and user (``adk-user:<app>/<user>``), their context maps holding the keys, merged key by key (``PATCH``),
so two sessions writing different keys never lose each other's.

Staleness. A session object remembers ``last_update_time``; ``append_event`` compares it with the stored
session's ``last_active_at`` and raises ``StaleSessionError`` when the stored one is newer, as ADK's database
and SQLite services do (a check before the write, like theirs: not a guard inside it).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events.event import Event
from google.adk.sessions import _session_util
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig, ListSessionsResponse
from google.adk.sessions.session import Session
from google.adk.sessions.state import State

from handoff.client import AsyncHandoffClient, NotFound
from handoff.integrations import _entries
from handoff.sessions.schemas import SessionRead, TypedEntry

FRAMEWORK = "adk"
KEY_CONTEXT = "adk"
STATE_CONTEXT = "adk_state"
EVENT_PREFIX = "ev."
LISTING_PAGE = 200

Json = dict[str, Any]


def describe(event: Event) -> tuple[str, str]:
    """The entry type and message of an event, as a person reads it in handoff."""
    if event.error_code or event.error_message:
        return "error", f"{event.author}: {event.error_code or ''} {event.error_message or ''}".strip()[:500]
    words: list[str] = []
    for part in (event.content.parts or []) if event.content else []:
        if part.text:
            words.append(part.text)
        elif part.function_call:
            words.append(f"tool call {part.function_call.name}")
        elif part.function_response:
            words.append(f"tool result {part.function_response.name}")
    text = " ".join(" ".join(words).split())
    return "info", (f"{event.author}: {text}" if text else f"{event.author}: event")[:500]


def _seconds(session: SessionRead) -> float:
    return session.last_active_at.timestamp()


class HandoffSessionService(BaseSessionService):
    """ADK sessions in handoff: ``Runner(agent=..., app_name=..., session_service=HandoffSessionService())``.

    ``base_url``/``api_key`` default to ``HANDOFF_URL``/``HANDOFF_API_KEY``; or pass a ready ``client``.
    """

    def __init__(
        self, *, base_url: str | None = None, api_key: str | None = None, client: AsyncHandoffClient | None = None
    ) -> None:
        self._base_url, self._api_key, self._given = base_url, api_key, client

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[AsyncHandoffClient]:
        if self._given is not None:
            yield self._given
            return
        async with AsyncHandoffClient(self._base_url, self._api_key) as client:
            yield client

    # Addressing --------------------------------------------------------------------------------------------

    @staticmethod
    def _external_id(kind: str, *parts: str) -> str:
        return _entries.external_id(kind, json.dumps(list(parts), separators=(",", ":")))

    async def _find(
        self, client: AsyncHandoffClient, app_name: str, user_id: str, session_id: str
    ) -> SessionRead | None:
        page = await client.list_sessions(external_id=self._external_id(FRAMEWORK, app_name, user_id, session_id))
        return page.items[0] if page.items else None

    async def _scope(self, client: AsyncHandoffClient, kind: str, *parts: str) -> SessionRead:
        """The workspace-level store of one app's (``adk-app``) or one user's (``adk-user``) state."""
        return await client.create_session(agent_type=kind, external_id=self._external_id(kind, *parts))

    async def _shared_state(self, client: AsyncHandoffClient, app_name: str, user_id: str) -> Json:
        app = await self._scope(client, "adk-app", app_name)
        user = await self._scope(client, "adk-user", app_name, user_id)
        merged = {State.APP_PREFIX + k: v for k, v in (app.context_summary or {}).items()}
        merged.update({State.USER_PREFIX + k: v for k, v in (user.context_summary or {}).items()})
        return merged

    async def _write_shared(self, client: AsyncHandoffClient, app_name: str, user_id: str, deltas: Json) -> None:
        if deltas["app"]:
            app = await self._scope(client, "adk-app", app_name)
            await client.update_context(app.session_id, deltas["app"])
        if deltas["user"]:
            user = await self._scope(client, "adk-user", app_name, user_id)
            await client.update_context(user.session_id, deltas["user"])

    # Events ------------------------------------------------------------------------------------------------

    async def _events(
        self, client: AsyncHandoffClient, session_id: str, config: GetSessionConfig | None
    ) -> list[Event]:
        if config is not None and config.num_recent_events == 0:
            return []
        if config is not None and config.num_recent_events is not None:
            page = await client.get_work_log(
                session_id, id_prefix=EVENT_PREFIX, order="desc", limit=min(config.num_recent_events, 1000)
            )
            stored = [entry for entry in reversed(page.items) if isinstance(entry, TypedEntry)]
        else:
            stored = [entry async for entry in _entries.entries(client, session_id, id_prefix=EVENT_PREFIX)]
        events = [await self._event(client, session_id, entry) for entry in stored]
        if config is not None and config.after_timestamp is not None:
            events = [event for event in events if event.timestamp >= config.after_timestamp]
        return events

    async def _event(self, client: AsyncHandoffClient, session_id: str, entry: TypedEntry) -> Event:
        _, payload = await _entries.unpack(client, session_id, entry.data["event"])
        return Event.model_validate_json(payload)

    async def _session_state(self, client: AsyncHandoffClient, stored: SessionRead) -> Json:
        """The session's own keys: the context copy when it folds every event, else rebuilt from the deltas."""
        copy = (stored.context_summary or {}).get(STATE_CONTEXT) or {}
        total = (await client.get_work_log(stored.session_id, id_prefix=EVENT_PREFIX, limit=1)).total
        if copy.get("events") == total:
            state: Json = copy.get("state", {})
            return state
        state = dict(copy.get("initial", {}))
        async for entry in _entries.entries(client, stored.session_id, id_prefix=EVENT_PREFIX):
            state.update(entry.data.get("delta", {}))
        return state

    # BaseSessionService ------------------------------------------------------------------------------------

    async def create_session(
        self, *, app_name: str, user_id: str, state: Json | None = None, session_id: str | None = None
    ) -> Session:
        """Create a session (``AlreadyExistsError`` when its id is taken); ``temp:`` keys are dropped."""
        session_id = (session_id or "").strip() or str(uuid.uuid4())
        deltas = _session_util.extract_json_safe_state_delta(state or {})
        token = uuid.uuid4().hex  # tells a session this call created from one that was already there
        key = {"app_name": app_name, "user_id": user_id, "session_id": session_id, "created_by": token}
        async with self._client() as client:
            stored = await client.create_session(
                agent_type=f"{FRAMEWORK}:{app_name}",
                external_id=self._external_id(FRAMEWORK, app_name, user_id, session_id),
                context_summary={
                    KEY_CONTEXT: key,
                    STATE_CONTEXT: {"initial": deltas["session"], "state": deltas["session"], "events": 0},
                },
            )
            if (stored.context_summary or {}).get(KEY_CONTEXT, {}).get("created_by") != token:
                raise AlreadyExistsError(f"Session with id {session_id} already exists.")
            await self._write_shared(client, app_name, user_id, deltas)
            merged = {**deltas["session"], **await self._shared_state(client, app_name, user_id)}
        return Session(
            id=session_id, app_name=app_name, user_id=user_id, state=merged, last_update_time=_seconds(stored)
        )

    async def get_session(
        self, *, app_name: str, user_id: str, session_id: str, config: GetSessionConfig | None = None
    ) -> Session | None:
        """The session with its events (``num_recent_events``, ``after_timestamp``) and merged state."""
        async with self._client() as client:
            stored = await self._find(client, app_name, user_id, session_id)
            if stored is None:
                return None
            events = await self._events(client, stored.session_id, config)
            state = {**await self._session_state(client, stored), **await self._shared_state(client, app_name, user_id)}
        return Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=state,
            events=events,
            last_update_time=_seconds(stored),
        )

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """The app's sessions (of one user when given), without events, oldest update first."""
        found: list[Session] = []
        async with self._client() as client:
            cursor: str | None = None
            shared: dict[str, Json] = {}
            while True:
                page = await client.list_sessions(
                    agent_type=f"{FRAMEWORK}:{app_name}", limit=LISTING_PAGE, cursor=cursor
                )
                for stored in page.items:
                    key = (stored.context_summary or {}).get(KEY_CONTEXT) or {}
                    if key.get("app_name") != app_name or (user_id is not None and key.get("user_id") != user_id):
                        continue
                    owner = key["user_id"]
                    if owner not in shared:
                        shared[owner] = await self._shared_state(client, app_name, owner)
                    copy = (stored.context_summary or {}).get(STATE_CONTEXT) or {}
                    found.append(
                        Session(
                            id=key["session_id"],
                            app_name=app_name,
                            user_id=owner,
                            state={**copy.get("state", {}), **shared[owner]},
                            last_update_time=_seconds(stored),
                        )
                    )
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        found.sort(key=lambda session: session.last_update_time)
        return ListSessionsResponse(sessions=found)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session with its events (app and user state stay)."""
        async with self._client() as client:
            stored = await self._find(client, app_name, user_id, session_id)
            if stored is not None:
                with contextlib.suppress(NotFound):
                    await client.delete_session(stored.session_id)

    async def get_user_state(self, *, app_name: str, user_id: str) -> Json:
        """The user's keys without their ``user:`` prefix."""
        async with self._client() as client:
            user = await self._scope(client, "adk-user", app_name, user_id)
        return dict(user.context_summary or {})

    async def append_event(self, session: Session, event: Event) -> Event:
        """Store the event and its state delta in one entry; raise ``StaleSessionError`` on a stale session."""
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        deltas = _session_util.extract_json_safe_state_delta(event.actions.state_delta if event.actions else {})
        async with self._client() as client:
            stored = await self._find(client, session.app_name, session.user_id, session.id)
            if stored is None:
                raise ValueError(f"Session {session.id} not found.")
            if _seconds(stored) > session.last_update_time + 1e-3:
                raise StaleSessionError(
                    "The last_update_time provided in the session object is earlier than the update_time in"
                    " storage. Please check if it is a stale session."
                )
            kind, message = describe(event)
            entry_id = EVENT_PREFIX + _entries.safe_token(event.id, 60)
            field = await _entries.pack(client, stored.session_id, "event", event.model_dump_json().encode())
            entry = {
                "id": entry_id,
                "type": kind,
                "message": message,
                "data": {"event": field, "delta": deltas["session"]},
            }
            await _entries.append_in_batches(client, stored.session_id, [entry])
            await self._write_shared(client, session.app_name, session.user_id, deltas)
            state = {
                k: v
                for k, v in session.state.items()
                if not k.startswith((State.APP_PREFIX, State.USER_PREFIX, State.TEMP_PREFIX))
            }
            state.update(deltas["session"])
            copy = (stored.context_summary or {}).get(STATE_CONTEXT) or {}
            total = (await client.get_work_log(stored.session_id, id_prefix=EVENT_PREFIX, limit=1)).total
            updated = await client.update_context(
                stored.session_id,
                {STATE_CONTEXT: {"initial": copy.get("initial", {}), "state": state, "events": total}},
            )
        session.last_update_time = _seconds(updated)
        return self._commit_event_to_session(session, event)
