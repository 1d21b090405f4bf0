"""``docs/grafana-dashboard.json`` against a real Prometheus scraping a real ``handoff serve --workers 2``.

Grafana is neither in Debian nor on PyPI, so no Grafana runs here; what a Grafana panel shows is what Prometheus
answers to the panel's query, and Prometheus is in Debian. So every query of the dashboard, with Grafana's
variables given the values Grafana would give them, is sent to a Prometheus that has scraped the service through
known traffic: each must be valid PromQL over the series the service really exports (``success``), and each panel
the traffic concerns must show data.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess, free_port
from tests.debian import installed
from tests.factories import Tenant
from tests.serving import Served, serve

pytestmark = pytest.mark.timeout(300)

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
PROMETHEUS = Path("/usr/bin/prometheus")
SCRAPE_SECONDS = 1
#: Grafana's ``$__rate_interval``: at least four scrape intervals, so a rate always has two samples to work with.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "5s"}
#: Panels with nothing to show after the traffic below: no MongoDB command fails on a healthy server.
QUIET_PANELS = {"MongoDB errors by kind"}


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="module")
def served(mongod: MongodProcess, database: MongoDatabase) -> Iterator[Served]:
    # Pages of four entries, so that the traffic seals some and the seals panel has data.
    with serve(mongod.url, database.name, workers=2, log_level="WARNING", page_entries=4) as service:
        yield service


@pytest.fixture(scope="module")
def prometheus(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus scraping the service every second; its HTTP API's base URL."""
    binary = installed(PROMETHEUS, "prometheus")
    directory = tmp_path_factory.mktemp("prometheus")
    target = served.base.removeprefix("http://")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "scrape_configs": [{"job_name": "handoff", "static_configs": [{"targets": [target]}]}],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    address = f"127.0.0.1:{free_port()}"
    argv = [
        str(binary),
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={address}",
    ]
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, preexec_fn=_die_with_parent)  # noqa: PLW1509
        try:
            base = f"http://{address}"
            _wait_until(lambda: _answers(f"{base}/-/ready"), what="Prometheus to be ready", log=directory)
            yield base
        finally:
            process.terminate()
            process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait_until(check: Any, *, what: str, log: Path | None = None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tail = (log / "prometheus.log").read_text()[-3000:] if log else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.25)


def _query(prometheus: str, expr: str, **over: float) -> dict[str, Any]:
    """An instant query, or (``start``, ``end``, ``step``) a range query: what a Grafana time series panel sends."""
    route = "query_range" if over else "query"
    response = httpx.get(f"{prometheus}/api/v1/{route}", params={"query": expr, **over}, timeout=10)
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, (expr, body)
    assert body["status"] == "success", (expr, body)
    return body


def _scrapes(prometheus: str) -> int:
    """How many scrapes of the service Prometheus has stored (0 before the first)."""
    result = _query(prometheus, 'count_over_time(up{job="handoff"}[10m])')["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _wait_for_scrapes(prometheus: str, count: int) -> None:
    """Until Prometheus has stored ``count`` more scrapes of the service than it has now."""
    wanted = _scrapes(prometheus) + count
    _wait_until(lambda: _scrapes(prometheus) >= wanted, what=f"{count} more scrapes of the service")


async def _traffic(base: str, tenant: Tenant) -> None:
    """Something for every panel: appends that seal pages, an artifact, a blob both ways, a 404, a claim, and an
    event stream open while it receives events."""
    headers = tenant.headers
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        created = await http.post("/v1/sessions", json={"agent_type": "grafana"})
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        async with http.stream("GET", f"/v1/sessions/{session_id}/events") as stream:
            assert stream.status_code == 200
            for number in range(20):
                appended = await http.post(f"/v1/sessions/{session_id}/work-log", json={"message": f"step {number}"})
                assert appended.status_code == 201, appended.text
            lines = stream.aiter_lines()
            received = 0
            while received < 20:
                line = await asyncio.wait_for(anext(lines), 30)
                received += line.startswith("event: work_log.appended")
            # Open (a subscriber, a request in progress) across a few scrapes, so the gauges' panels see it.
            await asyncio.sleep(3 * SCRAPE_SECONDS)
        artifact = {"path": "src/app.py", "action": "modified"}
        assert (await http.post(f"/v1/sessions/{session_id}/artifacts", json=artifact)).status_code == 201
        uploaded = await http.post(f"/v1/sessions/{session_id}/blobs", content=b"x" * 100_000)
        assert uploaded.status_code == 201, uploaded.text
        blob_id = uploaded.json()["blob_id"]
        assert (await http.get(f"/v1/sessions/{session_id}/blobs/{blob_id}")).status_code == 200
        assert (await http.get("/v1/sessions/sess_nothing_here")).status_code == 404
        notes = {"summary": "half done", "next_steps": ["finish"]}
        assert (await http.post(f"/v1/sessions/{session_id}/handoff", json=notes)).status_code == 200
        claimed = await http.post("/v1/handoffs/claim", json={"agent_type": "grafana"})
        assert claimed.status_code == 201, claimed.text
        released = await http.post(f"/v1/claims/{claimed.json()['claim_id']}/release", json={"reason": "a test"})
        assert released.status_code == 200, released.text


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"a Grafana variable this test does not know: {target['expr']}"
            queries.append((panel["title"], expr))
    return queries


def test_every_panel_query_is_answered_and_the_panels_show_the_traffic(
    served: Served, prometheus: str, tenant: Tenant
) -> None:
    _wait_for_scrapes(prometheus, 2)
    start = time.time()
    # Twice: a series Prometheus sees for the first time (the first 404, the first claim) is its own baseline, so
    # only the second round gives its rate a value above zero.
    for _ in range(2):
        asyncio.run(_traffic(served.base, tenant))
        _wait_for_scrapes(prometheus, 2)

    empty = []
    for title, expr in _panel_queries():
        result = _query(prometheus, expr, start=start, end=time.time(), step=SCRAPE_SECONDS)["data"]["result"]
        values = [float(value) for series in result for _, value in series["values"]]
        if title not in QUIET_PANELS and not any(value > 0 for value in values):
            empty.append(f"{title}: {expr} -> {result}")
    assert not empty, "\n".join(empty)
