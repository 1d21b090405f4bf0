"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against the real service.

The service runs on a loopback port from this test's own event loop (``serve_app``), on the test mongod, and
Playwright's async API drives Chromium from the same loop. Chromium is Debian's (``/usr/bin/chromium``; installed
with apt-get when missing, as root, as CI runs), never Playwright's own download. Every page visited is checked
by axe-core (vendored under ``tests/vendor/axe-core``) and photographed into the test's ``tmp_path``; a failed
test also copies its screenshots to ``.ci-artifacts/ui/<test>/`` in the checkout and names them in its report.
Any console error or uncaught page error fails the test.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from litestar import Litestar
from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, Route, async_playwright, expect
from pydantic import SecretStr

from handoff import cache
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.plans import service as plans
from handoff.plans.schemas import PlanCreate
from handoff.sessions import service
from handoff.sessions.models import ArtifactAction, EntryType, SessionStatus
from handoff.sessions.schemas import ArtifactCreate, HandoffRequest, SessionCreate, WorkLogCreate
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal
from tests.debian import installed
from tests.factories import Tenant
from tests.test_auth import FakeMonotonic
from tests.test_client_sync import serve_app

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).parent.parent / ".ci-artifacts" / "ui"
#: What the closed network here needs: no background connections Chromium would make (and be refused).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
SETTINGS = Settings()
FOCUSED = "() => [document.activeElement.textContent.trim(), getComputedStyle(document.activeElement).outlineStyle]"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed with apt-get on a fresh machine (CI runs as root)."""
    return installed(CHROMIUM, "chromium")


@pytest.fixture(scope="module")
async def browser(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    playwright: Playwright = await async_playwright().start()
    try:
        # launch() gives each browser a fresh temporary profile (user-data-dir) of its own.
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
    finally:
        await playwright.stop()


def _settings(mongod: MongodProcess, database: MongoDatabase, data_dir: Path, **changes: Any) -> Settings:
    """The service's settings for these tests: the test mongod, a dashboard secret of their own (so a sign-in
    outlives a restart of the service), its data dir its own."""
    return Settings(
        mongodb_url=mongod.url,
        database=database.name,
        data_dir=data_dir,
        ui_secret=SecretStr("browser-tests-" + "s" * 32),
        log_level="WARNING",
        **changes,
    )


@pytest.fixture(scope="module")
async def base_url(
    mongod: MongodProcess, database: MongoDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The service on a loopback port for this module."""
    settings = _settings(mongod, database, tmp_path_factory.mktemp("ui-data"))
    async with serve_app(create_app(settings, database=database)) as url:
        yield url


MakeApp = Callable[..., Litestar]


@pytest.fixture
def make_app(mongod: MongodProcess, database: MongoDatabase, tmp_path: Path) -> MakeApp:
    """A service of the test's own (to stop, restart or limit), with these tests' settings and ``changes``."""

    def make(**changes: Any) -> Litestar:
        return create_app(_settings(mongod, database, tmp_path / "data", **changes), database=database)

    return make


class Visit:
    """One browser tab of a test: screenshots, the accessibility check, and the console errors it collected."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.errors: list[str] = []
        self.allowed_statuses: set[int] = set()
        #: While a test has stopped the service: Chromium logs each refused reconnection of a stream.
        self.service_down = False
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # A 404 or 401 page that a test asks for on purpose is logged as a failed resource load.
        if any(f"status of {status}" in message.text for status in self.allowed_statuses):
            return
        if self.service_down and "net::ERR_CONNECTION_REFUSED" in message.text:
            return
        self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    async def check(self, name: str) -> None:
        """Screenshot the page and fail on any axe-core violation."""
        await self.page.screenshot(path=self.shots / f"{name}.png", full_page=True)
        results: dict[str, Any] = await self.page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
        )
        violations = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
            for v in results["violations"]
        ]
        assert violations == [], f"{name}: {violations}"


@asynccontextmanager
async def _tab(browser: Browser, base_url: str, shots: Path, request: pytest.FixtureRequest) -> AsyncIterator[Visit]:
    """A fresh browser context on ``base_url``; its screenshots kept when the test failed, its errors asserted."""
    context = await browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    await context.add_init_script(path=str(AXE))  # through DevTools: not a page script, so the CSP allows it
    tab = Visit(await context.new_page(), shots)
    try:
        yield tab
    finally:
        await context.close()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            kept = ARTIFACTS / request.node.name
            shutil.copytree(shots, kept, dirs_exist_ok=True)
            print(f"screenshots of the failed test: {kept}")  # noqa: T201 - the report is where CI shows it
    assert tab.errors == []


@pytest.fixture
async def visit(
    browser: Browser, base_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Visit]:
    async with _tab(browser, base_url, tmp_path, request) as tab:
        yield tab


def _principal(tenant: Tenant) -> Principal:
    return Principal(workspace_id=tenant.workspace.workspace_id, api_key_id=tenant.key_id)


async def _seed(tenant: Tenant) -> dict[str, str]:
    """A small workspace: a plan, four sessions of two agents (one with a long log), a handoff and a replay."""
    principal, ws = _principal(tenant), tenant.workspace.workspace_id
    await plans.create_plan(
        ws,
        PlanCreate.model_validate(
            {
                "slug": "auth-rewrite",
                "title": "Rewrite the auth module",
                "phases": [{"name": "build", "tasks": [{"name": "a", "status": "completed"}, {"name": "b"}]}],
                "current_phase": "build",
            }
        ),
    )
    long = await service.create_session(
        principal,
        SessionCreate(agent_type="coder", plan="auth-rewrite", context_summary={"goal": "fix login", "retries": 2}),
        settings=SETTINGS,
    )
    long_id = long.session.session_id
    entries = [WorkLogCreate(message=f"step {n}", id=f"e{n:03}") for n in range(120)]
    entries[5] = WorkLogCreate(message="Reproduced the bug", type=EntryType.CHECKPOINT, id="e005")
    entries[119] = WorkLogCreate(
        message="Use the new parser", type=EntryType.DECISION, id="e119", data={"because": "it streams"}
    )
    await service.log_work_batch(ws, long_id, entries, settings=SETTINGS)
    for path, action in (("src/login.py", ArtifactAction.MODIFIED), ("tests/test_login.py", ArtifactAction.CREATED)):
        await service.record_artifact(ws, long_id, ArtifactCreate(path=path, action=action), settings=SETTINGS)

    done = await service.create_session(principal, SessionCreate(agent_type="coder"), settings=SETTINGS)
    await service.end(ws, done.session.session_id, status=SessionStatus.COMPLETED, summary="shipped")
    broken = await service.create_session(principal, SessionCreate(agent_type="reviewer"), settings=SETTINGS)
    await service.log_work(
        ws, broken.session.session_id, WorkLogCreate(message="tests failed", type=EntryType.ERROR), settings=SETTINGS
    )
    await service.end(ws, broken.session.session_id, status=SessionStatus.FAILED, summary="gave up")
    waiting = await service.create_session(principal, SessionCreate(agent_type="reviewer"), settings=SETTINGS)
    await service.record_handoff(
        ws, waiting.session.session_id, HandoffRequest(summary="Review half done", next_steps=["read auth.py"])
    )
    replay = await service.replay_session(principal, done.session.session_id, agent_type="coder", settings=SETTINGS)
    return {
        "long": long_id,
        "done": done.session.session_id,
        "waiting": waiting.session.session_id,
        "replay": replay.session.session_id,
    }


async def _sign_in(visit: Visit, tenant: Tenant) -> None:
    page = visit.page
    await page.goto("/ui/sessions")
    await expect(page).to_have_url(f"{_origin(page)}/ui/sign-in")
    await page.get_by_label("API key").fill(tenant.secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Sessions", exact=True)).to_be_visible()


def _origin(page: Page) -> str:
    return page.url.split("/ui", 1)[0]


async def test_a_person_follows_a_session_from_sign_in_to_sign_out(visit: Visit, tenant: Tenant) -> None:
    ids = await _seed(tenant)
    page = visit.page

    await page.goto("/ui/sessions")
    await visit.check("sign-in")
    await _sign_in(visit, tenant)
    await page.keyboard.press("Tab")  # the first stop is the skip link, and the focus shows
    assert await page.evaluate(FOCUSED) == ["Skip to content", "solid"]
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")  # past the skip link, the next stop is in the page's content
    assert (await page.evaluate(FOCUSED))[1] == "solid"
    assert await page.evaluate("() => document.activeElement.closest('main') !== null")
    rows = page.locator("#sessions tbody tr")
    await expect(rows).to_have_count(5)
    assert tenant.secret not in await page.content()
    await visit.check("sessions")

    # Filter: the table updates in place (htmx) and the address keeps the filter.
    await page.get_by_label("Status").select_option("paused")
    await expect(rows).to_have_count(1)
    await expect(page).to_have_url(f"{_origin(page)}/ui/sessions?status=paused&agent_type=&plan=&external_id=")
    await expect(rows.first).to_contain_text(ids["waiting"])
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Plan").select_option("auth-rewrite")
    await expect(rows).to_have_count(1)

    # The session: its timeline a page at a time, newest first, checkpoints and decisions marked in words.
    await page.get_by_role("link", name=ids["long"]).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(ids["long"])
    pager = page.get_by_role("navigation", name="Pages of the work log", exact=True)
    await expect(pager).to_contain_text("Entries 1 to 50 of 120 · page 1 of 3")
    decision = page.locator("#entry-e119")
    await expect(decision).to_contain_text("Decision")
    await expect(decision).to_have_class("t-decision notable")
    await decision.get_by_text("Data (1 key)").click()
    await expect(decision.locator("pre")).to_contain_text('"because": "it streams"')
    await expect(page.get_by_text("1 of 2 tasks done (50 %)")).to_be_visible()
    await expect(page.get_by_text("src/login.py")).to_be_visible()
    await visit.check("session")
    await pager.get_by_role("link", name="Last").click()
    await expect(pager).to_contain_text("page 3 of 3")
    checkpoint = page.locator("#entry-e005")
    await expect(checkpoint).to_contain_text("Checkpoint")
    await expect(checkpoint).to_contain_text("Reproduced the bug")

    # Lineage: the replayed session links back to the one it continues.
    await page.goto(f"/ui/sessions/{ids['replay']}")
    await page.get_by_role("link", name=ids["done"]).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(ids["done"])
    await expect(page.locator("section.lineage")).to_contain_text(ids["replay"])

    # A lifecycle button asks first, then acts.
    await page.goto(f"/ui/sessions/{ids['long']}")
    await page.get_by_text("Pause…").click()
    await page.get_by_role("button", name="Yes, pause").click()
    await expect(page.get_by_role("status")).to_have_text("Session paused.")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Paused")

    # Handoffs: the waiting queue, and the place the claims will take.
    await page.get_by_role("link", name="Handoffs").click()
    await expect(page.locator("#waiting")).to_contain_text("Review half done")
    await expect(page.locator("#waiting")).to_contain_text(ids["waiting"])
    await expect(page.locator("#claims")).to_be_visible()
    await visit.check("handoffs")

    # Analytics: the figures are in the charts' labels, as text.
    await page.get_by_role("link", name="Analytics").click()
    await expect(page.get_by_text("Sessions started: 5 in all")).to_be_visible()
    await expect(page.get_by_text("Sessions failed: 1 in all")).to_be_visible()
    success = page.locator("#success-title + svg")
    await expect(success).to_contain_text("coder")
    await expect(success).to_contain_text("100 % (1 of 1 ended)")
    await expect(success).to_contain_text("0 % (0 of 1 ended)")
    await expect(page.locator("#churn-title + svg")).to_contain_text("1 touch in 1 session")
    await expect(page.get_by_role("cell", name="tests failed")).to_be_visible()
    await visit.check("analytics")

    # A phone's width: no sideways scrolling, still accessible.
    await page.set_viewport_size({"width": 390, "height": 844})
    for path, name in (("/ui/sessions", "sessions-phone"), (f"/ui/sessions/{ids['long']}", "session-phone")):
        await page.goto(path)
        assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390
        await visit.check(name)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto("/ui/sessions")
    await expect(page).to_have_url(f"{_origin(page)}/ui/sign-in")


async def test_a_revoked_key_ends_the_browser_session(
    visit: Visit, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMonotonic()
    monkeypatch.setattr(cache, "time", SimpleNamespace(monotonic=fake.monotonic))  # the key cache is a TtlCache
    await _sign_in(visit, tenant)

    await workspaces.revoke_api_key(tenant.key_id)
    fake.offset = 5.0  # the key cache's longest window (HANDOFF_API_KEY_CACHE_SECONDS is at most 5)
    await visit.page.reload()

    await expect(visit.page).to_have_url(f"{_origin(visit.page)}/ui/sign-in")
    await expect(visit.page.get_by_role("status")).to_contain_text("no longer opens this workspace")
    await visit.check("signed-out-by-revocation")


async def test_another_workspaces_session_is_the_404_page(visit: Visit, tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = await service.create_session(_principal(other_tenant), SessionCreate(), settings=SETTINGS)
    await _sign_in(visit, tenant)
    visit.allowed_statuses = {404}

    response = await visit.page.goto(f"/ui/sessions/{theirs.session.session_id}")

    assert response is not None
    assert response.status == 404
    await expect(visit.page.get_by_role("heading", level=1)).to_have_text("404 · Not found")
    await visit.check("not-found")


# The live parts: the pages follow changes made through the REST API, without a reload ---------------------------


@pytest.fixture
async def rest(base_url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API of the same service, as an agent holding the tenant's key calls it."""
    async with httpx.AsyncClient(base_url=base_url, headers=tenant.headers) as client:
        yield client


#: What a page says (static/live.js) while its stream is open, and while it reconnects.
LIVE = "Live: changes appear here as they happen."
RECONNECTING = "Reconnecting to live updates…"


async def _live(page: Page, query: str = "") -> None:
    """Wait until the page's stream (for ``query``, after a filter swapped it) is open: it subscribes before it
    answers, so what follows is seen. (No ``*=""`` for no query: an empty substring selector matches nothing.)"""
    connect = f'[sse-connect*="{query}"]' if query else "[sse-connect]"
    await expect(page.locator(f'{connect}[data-live="open"]')).to_have_count(1)


async def _call(rest: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    response = await rest.request(method, f"/v1/{path}", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_the_sessions_rows_follow_the_api_and_keep_to_the_filters(
    visit: Visit, tenant: Tenant, rest: httpx.AsyncClient
) -> None:
    page = visit.page
    await _sign_in(visit, tenant)
    await expect(page.get_by_text("No sessions match.")).to_be_visible()
    await page.get_by_label("Agent type").fill("coder")
    await page.get_by_label("Agent type").press("Enter")
    await expect(page).to_have_url(f"{_origin(page)}/ui/sessions?status=&agent_type=coder&plan=&external_id=")
    await _live(page, "agent_type=coder")
    rows = page.locator("#sessions tbody tr")

    # A new session of the filtered agent type appears at the top; one of another type does not.
    other = await _call(rest, "POST", "sessions", {"agent_type": "reviewer"})
    coder = await _call(rest, "POST", "sessions", {"agent_type": "coder"})
    row = page.locator(f"#row-{coder['session_id']}")
    await expect(row).to_contain_text("Active")
    await expect(page.get_by_text("No sessions match.")).to_be_hidden()
    await expect(rows).to_have_count(1)

    # Its counts and status follow the API.
    await _call(rest, "POST", f"sessions/{coder['session_id']}/work-log", {"message": "m", "type": "error"})
    await expect(row.locator("td[data-label=Errors]")).to_have_text("1")
    await expect(row.locator("td[data-label=Actions]")).to_have_text("1")
    await _call(rest, "POST", f"sessions/{coder['session_id']}/pause")
    await expect(row).to_contain_text("Paused")
    await visit.check("sessions-live")

    # A session that stops matching the filters leaves the table (and the other never entered it).
    await page.get_by_label("Status").select_option("paused")
    await expect(rows).to_have_count(1)
    await _live(page, "status=paused")
    await _call(rest, "POST", f"sessions/{coder['session_id']}/resume")
    await expect(rows).to_have_count(0)
    assert await page.locator(f"#row-{other['session_id']}").count() == 0

    # One whose status changes into the filter arrives at the top, the newest arrival first.
    await _call(rest, "POST", f"sessions/{coder['session_id']}/pause")
    await expect(rows).to_have_count(1)
    later = await _call(rest, "POST", "sessions", {"agent_type": "coder"})
    await _call(rest, "POST", f"sessions/{later['session_id']}/pause")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_have_id(f"row-{later['session_id']}")
    await expect(rows.last).to_have_id(f"row-{coder['session_id']}")
    await expect(page.locator("#results .live-state")).to_have_text(LIVE)


async def test_the_session_page_tails_its_log_live(visit: Visit, tenant: Tenant, rest: httpx.AsyncClient) -> None:
    page = visit.page
    created = await _call(rest, "POST", "sessions", {"agent_type": "coder"})
    sid = created["session_id"]
    await _sign_in(visit, tenant)
    await page.goto(f"/ui/sessions/{sid}")
    await expect(page.get_by_text("No entries.")).to_be_visible()
    await _live(page)

    await _call(rest, "POST", f"sessions/{sid}/work-log", {"message": "first step", "id": "live-1"})
    await _call(
        rest, "POST", f"sessions/{sid}/work-log", {"message": "Chose the parser", "type": "decision", "id": "live-2"}
    )
    entries = page.locator("#entries li")
    await expect(entries).to_have_count(2)
    await expect(entries.first).to_contain_text("Chose the parser")  # newest first, as the page orders them
    await expect(entries.first).to_contain_text("Decision")
    await expect(page.get_by_text("No entries.")).to_be_hidden()
    await expect(page.locator("dl.facts")).to_contain_text("2 entries")

    await _call(rest, "POST", f"sessions/{sid}/artifacts", {"path": "src/parser.py", "action": "created"})
    await expect(page.locator("#artifacts")).to_contain_text("src/parser.py")
    await _call(rest, "PUT", f"sessions/{sid}/context", {"goal": "stream the input"})
    await expect(page.locator("#notes")).to_contain_text("stream the input")
    await _call(rest, "POST", f"sessions/{sid}/handoff", {"summary": "parser half done"})
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Paused")
    await expect(page.locator("#notes")).to_contain_text("parser half done")
    await expect(page.get_by_text("Resume…")).to_be_visible()  # the lifecycle follows the status
    await visit.check("session-live")

    # Oldest first, the newest entries are at the end: new ones are appended there.
    await page.get_by_label("Order").select_option("asc")
    await expect(entries.last).to_contain_text("Chose the parser")
    await _live(page, "order=asc")
    await _call(rest, "POST", f"sessions/{sid}/work-log", {"message": "third step", "id": "live-3"})
    await expect(entries).to_have_count(3)
    await expect(entries.last).to_contain_text("third step")


async def test_the_handoffs_page_shows_a_claim_with_its_lease_counting_down(
    visit: Visit, tenant: Tenant, rest: httpx.AsyncClient
) -> None:
    page = visit.page
    waiting = await _call(rest, "POST", "sessions", {"agent_type": "reviewer"})
    await _call(rest, "POST", f"sessions/{waiting['session_id']}/handoff", {"summary": "review the parser"})
    await _sign_in(visit, tenant)
    await page.get_by_role("link", name="Handoffs").click()
    await expect(page.locator("#waiting")).to_contain_text("review the parser")
    await expect(page.locator("#claims")).to_contain_text("No handoff is claimed right now.")
    await _live(page)

    claim = await _call(rest, "POST", "handoffs/claim", {"lease_seconds": 600})
    row = page.locator(f"#claim-{claim['claim_id']}")
    await expect(row).to_contain_text(waiting["session_id"])
    await expect(row).to_contain_text(claim["session"]["session_id"])
    countdown = row.locator("time.countdown")
    await expect(countdown).to_have_text(re.compile(r"^(10 min 0|9 min \d+) s left$"))
    first = await countdown.text_content()
    await expect(countdown).not_to_have_text(first or "")  # it counts down by itself, a second at a time
    assert await countdown.get_attribute("datetime") is not None
    await visit.check("handoffs-live")


async def test_a_revoked_key_ends_a_live_page_without_a_reload(
    visit: Visit, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMonotonic()
    monkeypatch.setattr(cache, "time", SimpleNamespace(monotonic=fake.monotonic))
    await _sign_in(visit, tenant)
    await _live(visit.page)

    await workspaces.revoke_api_key(tenant.key_id)
    fake.offset = 5.0  # the key cache of the page the browser is sent back to

    # The stream notices within live.KEY_CHECK_SECONDS and the page goes to the sign-in form by itself.
    await expect(visit.page).to_have_url(f"{_origin(visit.page)}/ui/sign-in", timeout=10_000)
    await expect(visit.page.get_by_role("status")).to_contain_text("no longer opens this workspace")


async def test_a_live_page_says_it_reconnects_while_the_service_restarts_and_misses_nothing(
    browser: Browser, make_app: MakeApp, tenant: Tenant, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ws = tenant.workspace.workspace_id
    sid = (await service.create_session(_principal(tenant), SessionCreate(), settings=SETTINGS)).session.session_id
    with socket.socket() as probe:  # a port given from the start: both servers may bind it (SO_REUSEADDR)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first: AbstractAsyncContextManager[str] | None = serve_app(make_app(), port=port, graceful=True)
    url = await first.__aenter__()
    try:
        async with _tab(browser, url, tmp_path, request) as visit:
            page = visit.page
            await _sign_in(visit, tenant)
            await page.goto(f"/ui/sessions/{sid}")
            await _live(page)
            state = page.locator("#session-live > .live-state")
            await expect(state).to_have_text(LIVE)
            entries = page.locator("#entries li")
            await service.log_work(ws, sid, WorkLogCreate(message="before the restart"), settings=SETTINGS)
            await expect(entries).to_have_count(1)

            # A graceful stop (what SIGTERM does): the stream ends with its retry hint, and the page says so.
            await first.__aexit__(None, None, None)
            first = None
            visit.service_down = True
            await expect(page.locator("#session-live")).to_have_attribute("data-live", "reconnecting")
            await expect(state).to_have_text(RECONNECTING)
            await visit.check("session-reconnecting")
            await service.log_work(ws, sid, WorkLogCreate(message="while it was down"), settings=SETTINGS)

            # Back on the same address: the browser reconnects by itself, from the last event it had.
            async with serve_app(make_app(), port=port, graceful=True):
                await expect(state).to_have_text(LIVE)
                await expect(entries).to_have_count(2)
                await expect(entries.first).to_contain_text("while it was down")
                await page.close()  # before this server stops too
    finally:
        if first is not None:
            await first.__aexit__(None, None, None)


async def test_a_page_whose_key_holds_all_its_streams_says_live_updates_are_paused(
    browser: Browser, make_app: MakeApp, tenant: Tenant, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with (
        serve_app(make_app(max_streams_per_key=1)) as url,
        httpx.AsyncClient(base_url=url, headers=tenant.headers) as agent,
        agent.stream("GET", "/v1/events") as held,  # the key's one stream
        _tab(browser, url, tmp_path, request) as visit,
    ):
        assert held.status_code == 200
        await _sign_in(visit, tenant)
        results = visit.page.locator("#results")
        await expect(results).to_have_attribute("data-live", "off")
        # In words, not only the dot's colour (the browser tries again after the retry the stream sent).
        await expect(results.locator(".live-state")).to_have_text(
            "Live updates are paused: this key holds all the streams it may."
        )
        await visit.check("sessions-live-off")
        await visit.page.close()


async def test_what_changes_before_a_page_s_stream_opens_still_shows(
    visit: Visit, tenant: Tenant, rest: httpx.AsyncClient
) -> None:
    page = visit.page
    sid = (await _call(rest, "POST", "sessions", {"agent_type": "coder"}))["session_id"]
    await _call(rest, "POST", f"sessions/{sid}/work-log", {"message": "on the page", "id": "g1"})
    await _sign_in(visit, tenant)
    held: list[Route] = []
    asked = asyncio.Event()

    def hold(route: Route) -> None:  # each stream waits, as a slow one would, until let go
        held.append(route)
        asked.set()

    await page.route("**/ui/live/**", hold)

    await page.goto(f"/ui/sessions/{sid}")
    entries = page.locator("#entries li")
    await expect(entries).to_have_count(1)
    await asyncio.wait_for(asked.wait(), 10)
    await _call(rest, "POST", f"sessions/{sid}/work-log", {"message": "before the stream", "id": "g2"})
    await held[0].continue_()
    await page.unroute("**/ui/live/**")
    await _live(page)
    await expect(entries).to_have_count(2)
    await expect(entries.first).to_contain_text("before the stream")
    await _call(rest, "POST", f"sessions/{sid}/work-log", {"message": "after it", "id": "g3"})
    await expect(entries).to_have_count(3)  # each entry once, whether re-sent, streamed or both
    await expect(page.locator("#entry-g2")).to_have_count(1)
