"""The dashboard over HTTP, in-process: sign-in, the browser session's cookie and CSRF, and what each page shows.

The browser flows (a real Chromium) are in ``test_ui_browser.py``; these check what a browser cannot see
directly: cookie attributes, that the key appears in no page or header, the secret kept for every worker.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.sessions import service
from handoff.sessions.models import EntryType
from handoff.sessions.schemas import SessionCreate, WorkLogCreate
from handoff.ui import live_parts
from handoff.ui.security import CSRF_COOKIE, SECRET_FILE, SESSION_COOKIE, ui_secret
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal
from tests.factories import Tenant
from tests.inprocess import in_process
from tests.ui_helpers import csrf_token, post_form, sign_in, ui_settings


@pytest.fixture
def dashboard_settings(settings: Settings, tmp_path: Path) -> Settings:
    return ui_settings(settings, tmp_path)


@pytest.fixture
async def ui(dashboard_settings: Settings, database: MongoDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(dashboard_settings, database=database)) as client:
        yield client


def _principal(tenant: Tenant) -> Principal:
    return Principal(workspace_id=tenant.workspace.workspace_id, api_key_id=tenant.key_id)


async def test_pages_ask_for_a_sign_in_first(ui: httpx.AsyncClient) -> None:
    for path in ("/ui/sessions", "/ui/handoffs", "/ui/analytics", "/ui/sessions/sess_x"):
        response = await ui.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/ui/sign-in"

    form = await ui.get("/ui/sign-in")
    assert form.status_code == 200
    assert 'type="password"' in form.text


async def test_sign_in_sets_a_sealed_strict_http_only_cookie_and_never_shows_the_key(
    ui: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await sign_in(ui, tenant.secret)

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sessions"
    cookies = [value for name, value in response.headers.multi_items() if name == "set-cookie"]
    session_cookie = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
    attributes = session_cookie.lower()
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/ui" in attributes
    assert "max-age=43200" in attributes
    assert "secure" not in attributes  # plain HTTP here; see the HTTPS test
    assert tenant.secret not in session_cookie
    assert workspaces.hash_key(tenant.secret) not in session_cookie  # encrypted, not just signed

    page = await ui.get("/ui/sessions")
    assert page.status_code == 200
    assert tenant.workspace.workspace_id in page.text
    everything = page.text + str(page.headers) + str(response.headers)
    assert tenant.secret not in everything


async def test_a_bad_key_is_refused_without_echoing_it(ui: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await sign_in(ui, "hk_not-a-real-key")

    assert response.status_code == 401
    assert "unknown, revoked or expired" in response.text
    assert "hk_not-a-real-key" not in response.text
    assert (await ui.get("/ui/sessions")).status_code == 303


async def test_every_state_changing_request_needs_the_csrf_token(ui: httpx.AsyncClient, tenant: Tenant) -> None:
    await ui.get("/ui/sign-in")  # the CSRF cookie alone is not enough
    refused = await ui.post("/ui/sign-in", data={"key": tenant.secret})
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]

    await sign_in(ui, tenant.secret)
    created = await service.create_session(_principal(tenant), SessionCreate(agent_type="coder"), settings=Settings())
    session_id = created.session.session_id
    forged = await ui.post(f"/ui/sessions/{session_id}/pause", data={"_csrf_token": "x" * 64})
    assert forged.status_code == 403
    assert (await service.get_session(tenant.workspace.workspace_id, session_id)).status == "active"

    paused = await post_form(ui, f"/ui/sessions/{session_id}", f"/ui/sessions/{session_id}/pause", {})
    assert paused.status_code == 303
    assert (await service.get_session(tenant.workspace.workspace_id, session_id)).status == "paused"
    assert "Session paused." in (await ui.get(f"/ui/sessions/{session_id}")).text


async def test_cookies_are_secure_over_https(dashboard_settings: Settings, database: MongoDatabase) -> None:
    app = create_app(dashboard_settings, database=database)
    async with in_process(app) as client:
        secure = httpx.AsyncClient(transport=client._transport, base_url="https://testserver")
        async with secure:
            form = await secure.get("/ui/sign-in")
    cookie = form.headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=")
    assert "; Secure" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "httponly" in cookie.lower()


async def test_sign_out_forgets_the_browser_session(ui: httpx.AsyncClient, tenant: Tenant) -> None:
    await sign_in(ui, tenant.secret)

    out = await post_form(ui, "/ui/sessions", "/ui/sign-out", {})

    assert out.status_code == 303
    assert (await ui.get("/ui/sessions")).status_code == 303
    assert "You are signed out." in (await ui.get("/ui/sign-in")).text


async def test_a_revoked_key_signs_the_browser_out(
    dashboard_settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    uncached = create_app(dashboard_settings.model_copy(update={"api_key_cache_seconds": 0}), database=database)
    async with in_process(uncached) as ui:
        await sign_in(ui, tenant.secret)
        assert (await ui.get("/ui/sessions")).status_code == 200

        await workspaces.revoke_api_key(tenant.key_id)

        response = await ui.get("/ui/sessions?status=active")
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/sign-in"
        form = await ui.get("/ui/sign-in")
        assert "no longer opens this workspace" in form.text
        # Signing in again with a good key returns to the page that was asked for.
        _, secret = await workspaces.create_api_key(tenant.workspace.slug)
        again = await post_form(ui, "/ui/sign-in", "/ui/sign-in", {"key": secret})
        assert again.headers["location"] == "/ui/sessions?status=active"


async def test_another_workspaces_session_is_the_404_page(
    ui: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await service.create_session(_principal(other_tenant), SessionCreate(), settings=Settings())
    await sign_in(ui, tenant.secret)

    for path in (f"/ui/sessions/{theirs.session.session_id}", "/ui/no-such-page"):
        response = await ui.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
        assert "404 · Not found" in response.text

    pause = await post_form(ui, "/ui/sessions", f"/ui/sessions/{theirs.session.session_id}/pause", {})
    assert pause.status_code == 404
    assert (
        await service.get_session(other_tenant.workspace.workspace_id, theirs.session.session_id)
    ).status == "active"


async def test_the_handoffs_page_shows_active_claims_however_many_newer_claims_ended(
    ui: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_parts, "CLAIMS_SHOWN", 2)  # as 200 claims would, with fewer calls: more ended than shown

    async def claim() -> dict[str, Any]:
        created = await ui.post("/v1/sessions", json={}, headers=tenant.headers)
        sid = created.json()["session_id"]
        await ui.post(f"/v1/sessions/{sid}/handoff", json={"summary": "over"}, headers=tenant.headers)
        made = await ui.post("/v1/handoffs/claim", json={"lease_seconds": 600}, headers=tenant.headers)
        assert made.status_code == 201
        body: dict[str, Any] = made.json()
        return body

    active = await claim()
    for _ in range(2):
        ended = await claim()
        await ui.post(f"/v1/claims/{ended['claim_id']}/release", json={}, headers=tenant.headers)
    await sign_in(ui, tenant.secret)

    page = (await ui.get("/ui/handoffs")).text

    assert f'id="claim-{active["claim_id"]}"' in page
    assert page.count('id="claim-') == 1


async def test_a_bad_filter_is_a_422_page(ui: httpx.AsyncClient, tenant: Tenant) -> None:
    await sign_in(ui, tenant.secret)

    response = await ui.get("/ui/sessions?status=sleeping")

    assert response.status_code == 422
    assert "status must be one of" in response.text


async def test_the_session_page_pages_through_the_log(ui: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await service.create_session(_principal(tenant), SessionCreate(agent_type="coder"), settings=Settings())
    session_id = created.session.session_id
    entries = [WorkLogCreate(message=f"step {n}", type=EntryType.INFO, id=f"e{n}") for n in range(120)]
    entries[7] = WorkLogCreate(message="chose the parser", type=EntryType.DECISION, id="e7", data={"why": "speed"})
    await service.log_work_batch(tenant.workspace.workspace_id, session_id, entries, settings=Settings())
    await sign_in(ui, tenant.secret)

    first = await ui.get(f"/ui/sessions/{session_id}")
    assert "Entries 1 to 50 of 120 · page 1 of 3" in first.text
    assert "step 119" in first.text  # newest first
    assert "step 69" not in first.text

    last = await ui.get(f"/ui/sessions/{session_id}?order=desc&page=3")
    assert "Entries 101 to 120 of 120 · page 3 of 3" in last.text
    assert "chose the parser" in last.text
    assert "&#34;why&#34;: &#34;speed&#34;" in last.text or '"why": "speed"' in last.text

    decisions = await ui.get(f"/ui/sessions/{session_id}?type=decision")
    assert "Entries 1 to 1 of 1" in decisions.text
    beyond = await ui.get(f"/ui/sessions/{session_id}?page=99")
    assert "page 3 of 3" in beyond.text


async def test_the_secret_is_generated_once_and_shared_by_every_worker(settings: Settings, tmp_path: Path) -> None:
    kept = ui_settings(settings, tmp_path / "data")

    first, second = ui_secret(kept), ui_secret(kept)

    assert first == second
    assert len(first) == 64
    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no draft left behind
    configured = settings.model_copy(update={"ui_secret": SecretStr("s" * 32)})
    assert ui_secret(configured) == b"s" * 32


async def test_csrf_token_of_one_browser_does_not_sign_in_another(ui: httpx.AsyncClient, tenant: Tenant) -> None:
    token = csrf_token((await ui.get("/ui/sign-in")).text)
    ui.cookies.clear()
    await ui.get("/ui/sign-in")  # a new CSRF cookie, not the one the token belongs to

    response = await ui.post("/ui/sign-in", data={"key": tenant.secret, "_csrf_token": token})

    assert response.status_code == 403


async def test_artifact_content_is_served_from_the_signed_in_workspace_inline_only_when_it_cannot_script(
    ui: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    async def blob(who: Tenant, sid: str, data: bytes, content_type: str) -> str:
        headers = {**who.headers, "content-type": content_type}
        response = await ui.post(f"/v1/sessions/{sid}/blobs", headers=headers, content=data)
        assert response.status_code == 201, response.text
        return str(response.json()["blob_id"])

    sid = str((await ui.post("/v1/sessions", headers=tenant.headers, json={})).json()["session_id"])
    text_id = await blob(tenant, sid, b"plain notes", "text/plain")
    html_id = await blob(tenant, sid, b"<script>alert(1)</script>", "text/html")
    for path, blob_id in (("notes.txt", text_id), ("page.html", html_id)):
        body = {"path": path, "action": "created", "blob_id": blob_id}
        assert (await ui.post(f"/v1/sessions/{sid}/artifacts", headers=tenant.headers, json=body)).status_code == 201
    theirs = str((await ui.post("/v1/sessions", headers=other_tenant.headers, json={})).json()["session_id"])
    their_blob = await blob(other_tenant, theirs, b"secret", "text/plain")
    await sign_in(ui, tenant.secret)

    shown = await ui.get(f"/ui/sessions/{sid}")
    assert f'href="/ui/sessions/{sid}/blobs/{text_id}"' in shown.text
    assert f'href="/ui/sessions/{sid}/blobs/{html_id}"' in shown.text

    text = await ui.get(f"/ui/sessions/{sid}/blobs/{text_id}")
    assert text.status_code == 200
    assert text.content == b"plain notes"
    assert not text.headers.get("content-disposition", "").startswith("attachment")
    html = await ui.get(f"/ui/sessions/{sid}/blobs/{html_id}")
    assert html.status_code == 200
    assert html.headers["content-disposition"].startswith("attachment")
    assert html.headers["x-content-type-options"] == "nosniff"
    assert html.headers["content-security-policy"] == "default-src 'none'; sandbox"

    assert (await ui.get(f"/ui/sessions/{theirs}/blobs/{their_blob}")).status_code == 404
    assert (await ui.get(f"/ui/sessions/{sid}/blobs/{their_blob}")).status_code == 404
