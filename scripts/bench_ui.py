"""Time the dashboard's pages at scale: every page's first render (the server's answer, HTML complete).

    .venv/bin/python scripts/bench_ui.py                                 # 100,000 sessions, a 1,000,000-entry log
    .venv/bin/python scripts/bench_ui.py --sessions 5000 --log-entries 50000  # a quick look

It starts a bundled mongod of its own, inserts the sessions of ``bench_analytics`` (same generator: ~20 entries
and a few artifacts each over 90 days, replay chains, waiting handoffs) plus one session whose work log holds
``--log-entries`` entries (paged by ``seals.paged_layout`` as the importer does), runs ``handoff serve``, signs in
through the form like a browser, and times ``--calls`` sequential GETs of each page after two warm-ups: the
Sessions list (first page, a filtered one, a page deep in the keyset), the long session (first page of its log,
one in the middle, the last, a type filter), Handoffs and Analytics. The goal is 300 ms at p95 for each. The
Analytics pages are timed twice: before the artifacts rollup has taken the sessions in (the reference pipeline,
as the page was) and after its first pass.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from _bench_common import percentile, serve
from bench_analytics import catch_up, insert_sessions, prepare
from handoff.localdb import start_mongod
from handoff.sessions import notables
from handoff.sessions.misses import page_bounds
from handoff.sessions.seals import paged_layout

GOAL_MS = 300
LONG_SESSION = "sess_long-log-0000-0000-000000000000"
_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
_NEXT = re.compile(r'href="/ui/sessions\?[^"]*cursor=([^"&]+)"')


def insert_long_session(url: str, database: str, workspace_id: str, entries: int) -> float:
    """One session whose work log holds ``entries`` entries (every tenth a checkpoint), stored as sealed pages."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=1)
    log = [
        {
            "id": f"e{n}",
            "message": f"step {n}",
            "type": "checkpoint" if n % 10 == 0 else "info",
            "data": {"n": n},
            "timestamp": start + timedelta(milliseconds=50 * n),
        }
        for n in range(entries)
    ]
    checkpoints = (entries + 9) // 10
    doc: dict[str, Any] = {
        "workspace_id": workspace_id,
        "session_id": LONG_SESSION,
        "external_id": None,
        "agent_api_key_id": None,
        "plan": None,
        "agent_type": "claude-code",
        "status": "active",
        "context_summary": {"goal": "a long run"},
        "work_log": log,
        "artifacts": [],
        "handoff_notes": None,
        "final_summary": None,
        "action_count": entries,
        "artifact_count": 0,
        "checkpoint_count": checkpoints,
        "error_count": 0,
        "last_checkpoint": log[(checkpoints - 1) * 10] if entries else None,
        "payload_bytes": 0,
        "replayed_from": None,
        "duration_minutes": None,
        "legacy": None,
        "started_at": start,
        "last_active_at": now,
        "ended_at": None,
        "paused_at": None,
        "created_at": start,
        "updated_at": now,
    }
    began = time.perf_counter()
    session, pages = paged_layout(doc, page_bounds(None), now)
    noted = notables.attach(session, pages)  # what an import of the same log writes
    with MongoClient(url, tz_aware=True) as client:
        client[database]["sessions"].insert_one(session)
        for collection, documents in (("log_pages", pages), ("log_notables", noted)):
            for first in range(0, len(documents), 1_000):
                client[database][collection].insert_many(documents[first : first + 1_000], ordered=False)
    return time.perf_counter() - began


def sign_in(http: httpx.Client, secret: str) -> None:
    form = http.get("/ui/sign-in")
    token = _CSRF.search(form.text)
    assert token, "no CSRF field on the sign-in page"
    answer = http.post("/ui/sign-in", data={"key": secret, "_csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text


def deep_cursor(http: httpx.Client, pages: int) -> str:
    """The cursor of the sessions page ``pages`` pages down, followed link by link as a person would."""
    cursor = ""
    for _ in range(pages):
        found = _NEXT.search(http.get(f"/ui/sessions?cursor={cursor}" if cursor else "/ui/sessions").text)
        assert found, "no next page"
        cursor = found.group(1)
    return cursor


def time_page(http: httpx.Client, path: str, calls: int) -> tuple[float, float]:
    """p50 and p95 in ms of ``calls`` GETs of ``path`` (each answered 200) after two warm-ups."""
    for _ in range(2):
        http.get(path)
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        answer = http.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    return percentile(samples, 0.5), percentile(samples, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--log-entries", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    database = "bench_ui"
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        server = start_mongod(Path(tmp) / "db")
        try:
            workspace_id, secret, _ = asyncio.run(prepare(server.url, database))
            seconds, deepest = insert_sessions(server.url, database, workspace_id, args.sessions, seed=args.seed)
            long_seconds = insert_long_session(server.url, database, workspace_id, args.log_entries)
            print(
                f"{args.sessions:,} sessions inserted in {seconds:.1f} s; a {args.log_entries:,}-entry log in "
                f"{long_seconds:.1f} s; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
                f"{datetime.now(UTC):%Y-%m-%d}"
            )
            middle = max(1, args.log_entries // 50 // 2)  # the log shows 50 entries a page
            last = max(1, -(-args.log_entries // 50))
            big = f"{args.log_entries:,}-entry"
            down = max(1, min(200, args.sessions // 50 - 1))
            month_ago = (datetime.now(UTC) - timedelta(days=29)).date().isoformat()
            # No background pass of the artifacts rollup: the Analytics pages are timed before it (the reference
            # pipeline, the page as it was) and again after a first pass, on the same data.
            serving = serve(server.url, database, artifacts_rollup_interval_seconds=0)
            with serving as service, httpx.Client(base_url=service.base, timeout=120) as http:
                sign_in(http, secret)
                pages = [
                    ("Sessions", "/ui/sessions"),
                    ("Sessions, status=failed", "/ui/sessions?status=failed"),
                    ("Sessions, agent_type=codex", "/ui/sessions?agent_type=codex"),
                    (f"Sessions, {down} pages down (keyset)", f"/ui/sessions?cursor={deep_cursor(http, down)}"),
                    (f"Session ({big} log), first page", f"/ui/sessions/{LONG_SESSION}"),
                    (f"Session ({big} log), page {middle:,}", f"/ui/sessions/{LONG_SESSION}?page={middle}"),
                    (f"Session ({big} log), page {last:,} (oldest)", f"/ui/sessions/{LONG_SESSION}?page={last}"),
                    (f"Session ({big} log), type=checkpoint", f"/ui/sessions/{LONG_SESSION}?type=checkpoint"),
                    ("Session (deepest lineage)", f"/ui/sessions/{deepest}"),
                    ("Handoffs", "/ui/handoffs"),
                ]
                analytics = [
                    ("Analytics (default window)", "/ui/analytics"),
                    (f"Analytics, since={month_ago} (30 days, the old default)", f"/ui/analytics?since={month_ago}"),
                    ("Analytics, all time", "/ui/analytics?since=&until="),
                ]
                timings = [(label, *time_page(http, path, args.calls)) for label, path in pages + analytics]
                timings = [
                    (f"{label}, before the artifacts rollup" if label.startswith("Analytics") else label, *t)
                    for label, *t in timings
                ]
                began = time.perf_counter()
                asyncio.run(catch_up(server.url, database, [workspace_id]))
                print(f"artifacts rollup's first pass: {time.perf_counter() - began:.1f} s")
                timings += [
                    (f"{label}, artifacts rollup", *time_page(http, path, args.calls)) for label, path in analytics
                ]
        finally:
            server.stop()
    load = os.getloadavg()
    print(f"load average after the timed calls (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    print("| page | p50 ms | p95 ms | goal |")
    print("|---|---:|---:|---|")
    for label, p50, p95 in timings:
        print(f"| {label} | {p50:.0f} | {p95:.0f} | {'met' if p95 < GOAL_MS else 'MISSED'} |")


if __name__ == "__main__":
    main()
