"""``HandoffSessionService`` against a live ``handoff serve``: every method ADK's session contract names.

ADK's own shared session tests live only in the google/adk-python repository (not in the sdist), which CI cannot
reach; these are ours, each through a fresh service object (nothing kept in memory between calls) and an app
name of its own.
"""

from __future__ import annotations

import uuid

import pytest
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events import Event, EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from handoff.client import AsyncHandoffClient
from handoff.integrations.adk import HandoffSessionService
from tests.live_service import LiveService


@pytest.fixture
def app() -> str:
    return f"app-{uuid.uuid4().hex[:10]}"


def service(live_service: LiveService) -> HandoffSessionService:
    return HandoffSessionService(base_url=live_service.url, api_key=live_service.api_key)


def said(author: str, text: str, timestamp: float | None = None, **delta: str) -> Event:
    event = Event(
        invocation_id="inv",
        author=author,
        content=types.Content(role="user" if author == "user" else "model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=dict(delta)),
    )
    if timestamp is not None:
        event.timestamp = timestamp
    return event


async def test_create_with_a_given_or_a_generated_id_and_refuse_a_taken_one(
    live_service: LiveService, app: str
) -> None:
    given = await service(live_service).create_session(app_name=app, user_id="u", session_id="s1", state={"k": 1})
    generated = await service(live_service).create_session(app_name=app, user_id="u")

    assert given.id == "s1"
    assert given.state == {"k": 1}
    assert generated.id
    assert generated.id != "s1"
    with pytest.raises(AlreadyExistsError):
        await service(live_service).create_session(app_name=app, user_id="u", session_id="s1")
    # The same id for another user or app is another session.
    await service(live_service).create_session(app_name=app, user_id="other", session_id="s1")
    assert await service(live_service).get_session(app_name=app, user_id="nobody", session_id="s1") is None


async def test_append_event_stores_the_event_and_its_state_delta(live_service: LiveService, app: str) -> None:
    session = await service(live_service).create_session(app_name=app, user_id="u", session_id="s", state={"a": 1})
    event = said("user", "hi", a="2", **{"app:theme": "dark", "user:lang": "fr", "temp:scratch": "x"})

    await service(live_service).append_event(session, event)

    assert session.state["temp:scratch"] == "x"  # visible during the invocation, as ADK keeps it in memory
    loaded = await service(live_service).get_session(app_name=app, user_id="u", session_id="s")
    assert loaded is not None
    assert loaded.state == {"a": "2", "app:theme": "dark", "user:lang": "fr"}
    assert [e.id for e in loaded.events] == [event.id]
    assert loaded.events[0].content == event.content
    assert loaded.events[0].actions.state_delta == {"a": "2", "app:theme": "dark", "user:lang": "fr"}


async def test_app_and_user_state_are_shared_across_sessions(live_service: LiveService, app: str) -> None:
    first = await service(live_service).create_session(app_name=app, user_id="ann", session_id="one")
    await service(live_service).create_session(app_name=app, user_id="ann", session_id="two")
    await service(live_service).create_session(app_name=app, user_id="bob", session_id="three")
    await service(live_service).append_event(first, said("user", "x", **{"app:plan": "pro", "user:name": "Ann"}))

    two = await service(live_service).get_session(app_name=app, user_id="ann", session_id="two")
    three = await service(live_service).get_session(app_name=app, user_id="bob", session_id="three")
    assert two is not None
    assert three is not None
    assert two.state == {"app:plan": "pro", "user:name": "Ann"}
    assert three.state == {"app:plan": "pro"}
    assert await service(live_service).get_user_state(app_name=app, user_id="ann") == {"name": "Ann"}
    fresh = await service(live_service).create_session(app_name=app, user_id="ann", session_id="four")
    assert fresh.state == {"app:plan": "pro", "user:name": "Ann"}


async def test_get_session_honours_num_recent_events_and_after_timestamp(live_service: LiveService, app: str) -> None:
    session = await service(live_service).create_session(app_name=app, user_id="u", session_id="s")
    for n in range(5):
        await service(live_service).append_event(session, said("user", f"m{n}", timestamp=1000.0 + n))

    def texts(loaded: object) -> list[str]:
        assert loaded is not None
        return [e.content.parts[0].text for e in loaded.events]  # type: ignore[attr-defined]

    get = service(live_service).get_session
    assert texts(await get(app_name=app, user_id="u", session_id="s")) == ["m0", "m1", "m2", "m3", "m4"]
    recent = GetSessionConfig(num_recent_events=2)
    assert texts(await get(app_name=app, user_id="u", session_id="s", config=recent)) == ["m3", "m4"]
    after = GetSessionConfig(after_timestamp=1003.0)
    assert texts(await get(app_name=app, user_id="u", session_id="s", config=after)) == ["m3", "m4"]
    none = GetSessionConfig(num_recent_events=0)
    assert texts(await get(app_name=app, user_id="u", session_id="s", config=none)) == []


async def test_list_and_delete(live_service: LiveService, app: str) -> None:
    for user, sid in (("ann", "a1"), ("ann", "a2"), ("bob", "b1")):
        await service(live_service).create_session(app_name=app, user_id=user, session_id=sid)

    everyone = await service(live_service).list_sessions(app_name=app)
    ann = await service(live_service).list_sessions(app_name=app, user_id="ann")
    assert sorted(s.id for s in everyone.sessions) == ["a1", "a2", "b1"]
    assert [s.id for s in ann.sessions] == ["a1", "a2"]  # oldest update first
    assert all(not s.events for s in everyone.sessions)

    await service(live_service).delete_session(app_name=app, user_id="ann", session_id="a1")
    assert await service(live_service).get_session(app_name=app, user_id="ann", session_id="a1") is None
    assert [s.id for s in (await service(live_service).list_sessions(app_name=app, user_id="ann")).sessions] == ["a2"]


async def test_a_stale_session_object_is_refused(live_service: LiveService, app: str) -> None:
    session = await service(live_service).create_session(app_name=app, user_id="u", session_id="s")
    copy = await service(live_service).get_session(app_name=app, user_id="u", session_id="s")
    assert copy is not None
    await service(live_service).append_event(session, said("user", "first"))

    with pytest.raises(StaleSessionError):
        await service(live_service).append_event(copy, said("user", "from the stale copy"))
    # The up-to-date object keeps writing.
    await service(live_service).append_event(session, said("model", "second"))
    loaded = await service(live_service).get_session(app_name=app, user_id="u", session_id="s")
    assert loaded is not None
    assert [e.content.parts[0].text for e in loaded.events if e.content and e.content.parts] == ["first", "second"]


async def test_events_read_well_in_handoff_and_large_ones_survive(live_service: LiveService, app: str) -> None:
    session = await service(live_service).create_session(app_name=app, user_id="u", session_id="s")
    big = "z" * 200_000
    await service(live_service).append_event(session, said("user", big))
    failed = Event(invocation_id="inv", author="agent", error_code="RESOURCE_EXHAUSTED", error_message="quota")
    await service(live_service).append_event(session, failed)

    loaded = await service(live_service).get_session(app_name=app, user_id="u", session_id="s")
    assert loaded is not None
    assert loaded.events[0].content is not None
    assert loaded.events[0].content.parts is not None
    assert loaded.events[0].content.parts[0].text == big
    async with AsyncHandoffClient(live_service.url, live_service.api_key) as client:
        (stored,) = (await client.list_sessions(agent_type=f"adk:{app}")).items
        log = await client.get_work_log(stored.session_id, id_prefix="ev.")
    assert [entry.type for entry in log.items] == ["info", "error"]  # type: ignore[union-attr]
    assert log.items[1].message == "agent: RESOURCE_EXHAUSTED quota"  # type: ignore[union-attr]
    assert stored.error_count == 1
