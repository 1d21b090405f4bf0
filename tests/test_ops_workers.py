"""``handoff serve --workers 2`` as an operator runs it: one coherent set of metrics, and a rolling restart that
loses nothing.

The service is a real process (see ``tests.serving``) on the shared mongod and this module's database; the
clients open a fresh connection per request, so the kernel spreads them over both workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.factories import Tenant
from tests.serving import Served, serve
from tests.test_ops_metrics import Samples, parse, value

pytestmark = pytest.mark.timeout(180)

WORK_LOG = "/v1/sessions/{session_id}/work-log"
FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture(scope="module")
def served(mongod: MongodProcess, database: MongoDatabase) -> Iterator[Served]:
    with serve(mongod.url, database.name, workers=2, log_level="WARNING") as service:
        yield service


def scrape(base: str) -> Samples:
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def appends_answered(samples: Samples, status: str) -> float:
    return value(samples, "handoff_http_requests_total", method="POST", route=WORK_LOG, status=status)


def metrics_directory(pid: int) -> Path:
    environ = dict(
        item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
    )
    return Path(environ[b"PROMETHEUS_MULTIPROC_DIR"].decode())


async def create_session(http: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await http.post("/v1/sessions", json={"agent_type": "ops"}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    session_id: str = response.json()["session_id"]
    return session_id


async def stored_ids(http: httpx.AsyncClient, tenant: Tenant, session_id: str) -> set[str]:
    found: set[str] = set()
    while True:
        params = {"offset": len(found), "limit": 100}
        response = await http.get(f"/v1/sessions/{session_id}/work-log", params=params, headers=tenant.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        found |= {entry["id"] for entry in body["items"]}
        if len(found) >= body["total"] or not body["items"]:
            return found


def test_both_workers_report_one_coherent_set(served: Served, tenant: Tenant) -> None:
    before = scrape(served.base)

    async def traffic() -> str:
        async with httpx.AsyncClient(base_url=served.base, limits=FRESH_CONNECTIONS, timeout=30) as http:
            session_id = await create_session(http, tenant)
            for n in range(40):
                entry = {"message": f"entry {n}", "id": f"e{n}"}
                response = await http.post(f"/v1/sessions/{session_id}/work-log", json=entry, headers=tenant.headers)
                assert response.status_code == 201, response.text
            return session_id

    session_id = asyncio.run(traffic())

    # Whichever worker answers a scrape, it reports both workers' counts: every scrape agrees.
    for _ in range(10):
        after = scrape(served.base)
        assert appends_answered(after, "201") - appends_answered(before, "201") == 40
        labels = {"method": "POST", "route": WORK_LOG, "status": "201"}
        count = "handoff_http_request_duration_seconds_count"
        assert value(after, count, **labels) - value(before, count, **labels) == 40
        assert not any(session_id in str(labels) for _, labels in after)
    workers = served.workers()
    assert len(workers) == 2
    directory = metrics_directory(workers[0])
    assert directory == metrics_directory(workers[1])
    writers = {path.stem.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}
    assert {str(pid) for pid in workers} <= writers, writers  # both workers counted some of that traffic


def test_restarting_one_worker_under_load_gives_no_500_and_loses_nothing(served: Served, tenant: Tenant) -> None:
    before = scrape(served.base)
    statuses: Counter[int] = Counter()
    disconnects = 0
    acknowledged: dict[str, set[str]] = {}

    async def load() -> dict[str, set[str]]:
        nonlocal disconnects
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=served.base, limits=FRESH_CONNECTIONS, timeout=60) as http:
            sessions = [await create_session(http, tenant) for _ in range(4)]
            acknowledged.update({session_id: set() for session_id in sessions})

            async def writer(number: int) -> None:
                nonlocal disconnects
                session_id = sessions[number % len(sessions)]
                n = 0
                while not stop.is_set():
                    entry = {"message": "under load", "id": f"w{number}-{n}"}
                    try:
                        response = await http.post(
                            f"/v1/sessions/{session_id}/work-log", json=entry, headers=tenant.headers
                        )
                    except httpx.TransportError:
                        disconnects += 1  # a connection the stopping worker closed before reading it: retry
                        continue
                    statuses[response.status_code] += 1
                    if response.status_code == 503:
                        continue  # retry the same id
                    if response.status_code == 201:
                        acknowledged[session_id].add(entry["id"])
                    n += 1

            writers = [asyncio.create_task(writer(number)) for number in range(8)]
            await asyncio.sleep(2)
            old, kept = served.workers()
            os.kill(old, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the supervisor starts a replacement
                await asyncio.sleep(0.2)
                now = served.workers()
                if len(now) == 2 and old not in now:
                    break
            else:
                raise AssertionError(f"no replacement for worker {old}: {served.workers()}")
            assert kept in served.workers()
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*writers)
            return {session_id: await stored_ids(http, tenant, session_id) for session_id in sessions}

    stored = asyncio.run(load())

    assert set(statuses) <= {201, 503}, (statuses, served.log()[-3000:])
    assert statuses[201] > 0
    for session_id, ids in acknowledged.items():
        assert ids <= stored[session_id], ids - stored[session_id]
    assert "Traceback" not in served.log(), served.log()[-3000:]
    # The stopped worker's counts stay in the total the survivors and its replacement report.
    assert appends_answered(scrape(served.base), "201") - appends_answered(before, "201") == statuses[201]
    print(f"statuses {dict(statuses)}, connections dropped before a response {disconnects}")  # noqa: T201


def test_a_json_serve_writes_only_json_lines(mongod: MongodProcess, database: MongoDatabase, tenant: Tenant) -> None:
    # uvicorn's own lines (startup, shutdown) come out as JSON too, and its plain access log is off.
    with serve(mongod.url, database.name, log_format="json", log_level="INFO") as service:
        assert httpx.get(f"{service.base}/v1/sessions", headers=tenant.headers, timeout=10).status_code == 200
    lines = [json.loads(line) for line in service.log().splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "handoff.access" and line["route"] == "/v1/sessions"]
    assert len(access) == 1
    assert access[0]["workspace_id"] == tenant.workspace.workspace_id
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert tenant.secret not in service.log()
