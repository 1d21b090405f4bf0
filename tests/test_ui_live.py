"""The dashboard's live streams over HTTP (a real server, since they stream): what a browser cannot easily see.

The browser flows (rows, the live tail, the claims' countdown, a revocation) are in ``test_ui_browser.py``; these
check the stream's own answers: no sign-in, the key's stream limit, another workspace's session, keyset pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.events.mapping import Position
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS
from handoff.ui import live_parts
from tests.factories import Tenant
from tests.test_client_sync import serve_app
from tests.ui_helpers import sign_in, ui_settings


@pytest.fixture
async def url(settings: Settings, tmp_path: Path, database: MongoDatabase) -> AsyncIterator[str]:
    async with serve_app(create_app(ui_settings(settings, tmp_path, max_streams_per_key=2), database=database)) as url:
        yield url


@pytest.fixture
async def browser(url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-in browser session (its cookies), as the pages' EventSource sends them."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        assert (await sign_in(client, tenant.secret)).status_code == 303
        yield client


class Messages:
    """The messages of one open stream, as ``(event, id, data, fields)`` (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> tuple[str | None, str | None, str, dict[str, str]]:
        while isinstance(found := await self.next_or_comment(), str):
            pass
        return found

    async def next_or_comment(self) -> tuple[str | None, str | None, str, dict[str, str]] | str:
        """The next message, or the next comment line (``": ..."``)."""
        fields: dict[str, str] = {}
        while True:
            line = await anext(self.lines)
            if line == "":
                if "event" in fields or "retry" in fields:  # not a comment's (Litestar adds it an empty data)
                    return fields.get("event"), fields.get("id"), fields.get("data", ""), fields
                fields = {}
                continue
            if line.startswith(":"):
                if not fields:
                    return line
            else:
                name, _, value = line.partition(":")
                fields[name] = fields.get(name, "") + value.removeprefix(" ")


@asynccontextmanager
async def live(client: httpx.AsyncClient, path: str, **params: Any) -> AsyncIterator[Messages]:
    async with client.stream("GET", path, params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Messages(response)


async def _open(messages: Messages) -> list[tuple[str | None, str]]:
    """Wait for the comment that says the page is current (it follows every change from here on); returns the
    parts re-sent before it, as ``(event, data)``."""
    resent = []
    while (found := await messages.next_or_comment()) != ": live":
        assert isinstance(found, tuple), found
        resent.append((found[0], found[2]))
    return resent


async def test_a_stream_without_a_sign_in_says_signed_out(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as anonymous, live(anonymous, "/ui/live/sessions") as messages:
        event, _, _, _ = await messages.next()
    assert event == "signed-out"


async def test_the_streams_count_against_the_keys_limit(browser: httpx.AsyncClient, url: str, tenant: Tenant) -> None:
    async with (
        httpx.AsyncClient(base_url=url, headers=tenant.headers, timeout=20) as agent,
        agent.stream("GET", "/v1/events") as first,
        live(browser, "/ui/live/handoffs") as second,
    ):
        assert first.status_code == 200
        await _open(second)
        async with live(browser, "/ui/live/sessions") as third:
            event, _, data, fields = await third.next()
    assert event == "live-off"
    assert "holds all the streams" in data
    assert int(fields["retry"]) >= 10_000  # the browser comes back later, not at once


async def test_another_workspaces_session_has_no_stream(
    browser: httpx.AsyncClient, url: str, other_tenant: Tenant
) -> None:
    async with httpx.AsyncClient(base_url=url, headers=other_tenant.headers) as theirs:
        created = (await theirs.post("/v1/sessions", json={})).json()
    response = await browser.get(f"/ui/live/sessions/{created['session_id']}")
    assert response.status_code == 404


async def test_new_sessions_arrive_on_the_first_page_only(browser: httpx.AsyncClient, url: str, tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=url, headers=tenant.headers, timeout=20) as agent:
        async with live(browser, "/ui/live/sessions", agent_type="coder") as first:
            await _open(first)
            created = (await agent.post("/v1/sessions", json={"agent_type": "coder"})).json()
            event, position, data, _ = await first.next()
        sid = created["session_id"]
        assert event == "session-added"
        assert f'id="row-{sid}"' in data
        assert position is not None
        assert Position.decode(position) is not None  # the browser resumes from it
        assert tenant.secret not in data

        await agent.post("/v1/sessions", json={"agent_type": "coder"})
        cursor = (await agent.get("/v1/sessions", params={"limit": 1})).json()["next_cursor"]
        async with live(browser, "/ui/live/sessions", cursor=cursor) as older:  # a later keyset page, showing sid
            await _open(older)
            await agent.post("/v1/sessions", json={"agent_type": "coder"})
            await agent.post(f"/v1/sessions/{sid}/work-log", json={"message": "m"})
            event, _, data, _ = await older.next()
        assert event == f"row-{sid}"  # the new session was not offered to this page; the shown row still updates
        assert '<td data-label="Actions" class="num">1</td>' in data


async def test_a_session_whose_status_enters_the_filter_arrives_on_the_first_page_only(
    browser: httpx.AsyncClient, url: str, tenant: Tenant
) -> None:
    async with httpx.AsyncClient(base_url=url, headers=tenant.headers, timeout=20) as agent:
        sid = (await agent.post("/v1/sessions", json={})).json()["session_id"]
        async with live(browser, "/ui/live/sessions", status="paused") as first:
            await _open(first)
            await agent.post(f"/v1/sessions/{sid}/pause")
            event, _, data, _ = await first.next()
        assert event == "session-added"  # at the top of the first page, though it is not new
        assert f'id="row-{sid}"' in data

        await agent.post("/v1/sessions", json={})
        cursor = (await agent.get("/v1/sessions", params={"limit": 1})).json()["next_cursor"]
        async with live(browser, "/ui/live/sessions", status="paused", cursor=cursor) as older:
            await _open(older)
            await agent.post(f"/v1/sessions/{sid}/resume")
            event, _, data, _ = await older.next()
            assert (event, data) == (f"row-{sid}", live_parts.REMOVED)  # left the filter: out of any page
            await agent.post(f"/v1/sessions/{sid}/pause")
            event, _, data, _ = await older.next()
        assert event == f"row-{sid}"  # back in the filter: a later page is not added to, only updates a shown row
        assert f'id="row-{sid}"' in data


async def test_a_fresh_stream_first_resends_what_changed_since_the_page_was_rendered(
    browser: httpx.AsyncClient, url: str, tenant: Tenant
) -> None:
    async with httpx.AsyncClient(base_url=url, headers=tenant.headers, timeout=20) as agent:
        sid = (await agent.post("/v1/sessions", json={"agent_type": "coder"})).json()["session_id"]
        shown = (await agent.post(f"/v1/sessions/{sid}/work-log", json={"message": "shown", "id": "s1"})).json()
        page = await browser.get(f"/ui/sessions/{sid}")
        assert f"after={shown['id']}" in page.text  # the page names the newest entry it shows
        # Between the page's render and its stream's subscription:
        await agent.post(f"/v1/sessions/{sid}/work-log", json={"message": "in the gap", "id": "s2"})
        late = (await agent.post("/v1/sessions", json={"agent_type": "coder"})).json()["session_id"]

        async with live(browser, f"/ui/live/sessions/{sid}", order="desc", edge="1", after=shown["id"]) as tail:
            resent = await _open(tail)
        async with live(browser, "/ui/live/sessions", agent_type="coder") as rows:
            rows_resent = dict(await _open(rows))
        async with live(browser, f"/ui/live/sessions/{sid}", edge="1", after="s2") as tail:
            await _open(tail)
            await agent.post(f"/v1/sessions/{sid}/work-log", json={"message": "live", "id": "s3"})
            event, position, _, _ = await tail.next()
        assert (event, position is not None) == ("entry", True)
        headers = {"Last-Event-ID": str(position)}
        async with browser.stream("GET", f"/ui/live/sessions/{sid}?edge=1&after=s2", headers=headers) as resumed:
            assert await _open(Messages(resumed)) == []  # resumed: it sends what it missed, nothing re-sent
        headers = {"Last-Event-ID": "00" * 8}  # not a position this service can resume from: starts afresh
        async with browser.stream("GET", "/ui/live/handoffs", headers=headers) as handoffs:
            assert (await Messages(handoffs).next())[0] == "handoffs"

    entries = [data for event, data in resent if event == "entry"]
    assert len(entries) == 1  # only the entry the page did not show
    assert "in the gap" in entries[0]
    assert "2 entries" in dict(resent)["summary"]
    assert f'id="row-{late}"' in rows_resent["rows"]  # the first page's rows as they are now


async def test_a_stream_of_a_bad_keyset_page_is_refused_before_it_starts(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/ui/live/sessions", params={"cursor": "not-a-cursor"})
    assert response.status_code == 422


async def test_a_shutdown_ends_a_live_stream_with_the_retry_hint(
    settings: Settings, tmp_path: Path, database: MongoDatabase, tenant: Tenant
) -> None:
    app = create_app(ui_settings(settings, tmp_path), database=database)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        assert (await sign_in(client, tenant.secret)).status_code == 303
        async with live(client, "/ui/live/handoffs") as messages:
            await _open(messages)
            app.state.shutdown.set()  # what SIGTERM sets first (handoff.ops.shutdown)
            event, _, _, fields = await messages.next()
            assert event is None
            assert int(fields["retry"]) == RETRY_AFTER_SHUTDOWN_MS  # the browser reconnects, to the next worker
            with pytest.raises(StopAsyncIteration):  # and the stream has ended
                await messages.next()


async def test_an_older_page_of_the_log_counts_the_entries_that_arrived(
    browser: httpx.AsyncClient, url: str, tenant: Tenant
) -> None:
    async with httpx.AsyncClient(base_url=url, headers=tenant.headers, timeout=20) as agent:
        sid = (await agent.post("/v1/sessions", json={})).json()["session_id"]
        async with live(browser, f"/ui/live/sessions/{sid}", type="decision") as older:  # no edge: an older page
            await _open(older)
            await agent.post(f"/v1/sessions/{sid}/work-log", json={"message": "not a decision"})
            await agent.post(f"/v1/sessions/{sid}/work-log", json={"message": "chose", "type": "decision"})
            found = {}
            while "behind" not in found:
                event, _, data, _ = await older.next()
                found[event] = data
    assert "entry" not in found  # entries go in place only at the live edge
    assert "1 new entry since this page loaded" in found["behind"]  # the filter's type only
