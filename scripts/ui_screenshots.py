"""Take the README's screenshots of the dashboard: a small workspace made through the API, photographed in Chromium.

    .venv/bin/python scripts/ui_screenshots.py          # writes docs/screenshots/*.png

It starts a bundled mongod and ``handoff serve`` of its own, records a few sessions through ``/v1`` as agents
would (entries of every type, artifacts, handoffs, a claimed one), signs in at ``/ui`` in Debian's Chromium (headless,
driven by Playwright as in the browser tests) and saves each page at a laptop width, and the session page at a
phone width too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

from _bench_common import bench_server, create_key, serve

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
STEPS = [
    ("info", "Read the failing test and the parser module"),
    ("info", "Ran the test suite: 3 failures in test_parser.py"),
    ("decision", "Parse dates with the standard library instead of a regex"),
    ("checkpoint", "Parser rewritten; unit tests pass"),
    ("warning", "Deprecated call in the CLI left for a later change"),
    ("error", "Integration test timed out against the staging API"),
    ("success", "All 214 tests pass"),
]


def record(http: httpx.Client) -> str:
    """A few sessions as agents leave them; returns the id of the most eventful one."""
    ids = []
    for agent, outcome in (("claude-code", "completed"), ("codex", "failed"), ("aider", None), ("claude-code", None)):
        sid = http.post("/v1/sessions", json={"agent_type": agent, "context_summary": {"goal": "fix the parser"}})
        ids.append(sid.json()["session_id"])
        for kind, message in STEPS:
            answer = http.post(
                f"/v1/sessions/{ids[-1]}/work-log", json={"message": message, "type": kind, "data": {"k": 1}}
            )
            answer.raise_for_status()
        for path, action in (("src/parser.py", "modified"), ("tests/test_dates.py", "created"), ("old.py", "deleted")):
            http.post(f"/v1/sessions/{ids[-1]}/artifacts", json={"path": path, "action": action})
        if outcome:
            http.post(f"/v1/sessions/{ids[-1]}/end", json={"status": outcome, "summary": "done"})
    http.post(
        f"/v1/sessions/{ids[2]}/handoff",
        json={"summary": "Parser done; docs next", "next_steps": ["update docs"], "blockers": ["flaky CI"]},
    )
    reviewed = http.post("/v1/sessions", json={"agent_type": "reviewer"}).json()["session_id"]
    http.post(f"/v1/sessions/{reviewed}/handoff", json={"summary": "Review the parser change", "next_steps": ["read"]})
    claimed = http.post("/v1/handoffs/claim", json={"agent_type": "reviewer", "lease_seconds": 900})
    claimed.raise_for_status()  # the Handoffs page shows it among the active claims, its lease counting down
    return str(ids[3])


async def photograph(base: str, secret: str, session_id: str) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    saved = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for width, height, suffix in ((1280, 900, ""), (390, 844, "-phone")):
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.goto(f"{base}/ui/sign-in")
            await page.get_by_label("API key").fill(secret)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url("**/ui/sessions")
            shots = [("session", f"/ui/sessions/{session_id}")]
            if not suffix:
                shots += [("sessions", "/ui/sessions"), ("handoffs", "/ui/handoffs"), ("analytics", "/ui/analytics")]
            for name, path in shots:
                await page.goto(base + path)
                if name != "analytics":  # a live page, photographed once its stream is open (it says so)
                    await page.locator('[data-live="open"]').wait_for()
                target = OUT / f"{name}{suffix}.png"
                await page.screenshot(path=str(target))
                saved.append(target)
            await page.close()
        await browser.close()
    return saved


def main() -> None:
    with bench_server("ui-screenshots") as server:
        key = asyncio.run(create_key(server.url))
        with serve(server.url) as service, httpx.Client(base_url=service.base, headers=key.headers) as http:
            session_id = record(http)
            for path in asyncio.run(photograph(service.base, key.secret, session_id)):
                print(path)


if __name__ == "__main__":
    main()
