"""``GET /metrics`` in one process: names, labels by route template, counts after known traffic, the token.

The app runs in-process on the shared mongod; prometheus-client's default registry lives as long as the test
process, so every test reads the change its own traffic made (:func:`scrape` before and after). The same counts
across two real workers are in ``test_ops_workers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from handoff import clock, metrics
from handoff.app import create_app
from handoff.claims import sweep
from handoff.config import Settings
from handoff.db import MongoDatabase
from tests.api import Api, ok, problem
from tests.factories import Tenant
from tests.inprocess import in_process
from tests.test_client_sync import serve_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

#: Every family GET /metrics must expose, whether or not anything was counted yet (issue 17, item 1).
FAMILIES = {
    "handoff_http_requests",
    "handoff_http_request_duration_seconds",
    "handoff_http_requests_in_progress",
    "handoff_entries_appended",
    "handoff_page_seals",
    "handoff_blob_bytes",
    "handoff_events_streamed",
    "handoff_event_subscribers",
    "handoff_claims",
    "handoff_mongodb_errors",
    "handoff_mongodb_command_failures",
    "handoff_api_key_cache",
}


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_for(samples: Samples, route: str, status: str, method: str = "POST") -> float:
    return value(samples, "handoff_http_requests_total", method=method, route=route, status=status)


async def test_requests_are_counted_by_route_template_and_status(client: httpx.AsyncClient, tenant: Tenant) -> None:
    before = await scrape(client)
    created = ok(await client.post("/v1/sessions", json={"agent_type": "coder"}, headers=tenant.headers), 201)
    session = created["session_id"]
    for n in range(3):
        entry = {"message": f"step {n}"}
        ok(await client.post(f"/v1/sessions/{session}/work-log", json=entry, headers=tenant.headers), 201)
    problem(await client.post("/v1/sessions/nope/work-log", json={"message": "x"}, headers=tenant.headers), 404)
    problem(await client.get(f"/v1/unknown/{session}", headers=tenant.headers), 404)
    problem(await client.get("/v1/sessions"), 401)
    after = await scrape(client)

    def delta(route: str, status: str, method: str = "POST") -> float:
        return requests_for(after, route, status, method) - requests_for(before, route, status, method)

    assert delta("/v1/sessions", "201") == 1
    assert delta("/v1/sessions/{session_id}/work-log", "201") == 3
    assert delta("/v1/sessions/{session_id}/work-log", "404") == 1
    assert delta("unmatched", "404", method="GET") == 1  # an unknown path never becomes a label of its own
    assert delta("/v1/sessions", "401", method="GET") == 1
    routes = {dict(labels).get("route") for name, labels in after if name == "handoff_http_requests_total"}
    assert not any(session in str(route) for route in routes)  # no raw path, no id, in any label

    histogram = "handoff_http_request_duration_seconds_count"
    labels = {"method": "POST", "route": "/v1/sessions/{session_id}/work-log", "status": "201"}
    assert value(after, histogram, **labels) - value(before, histogram, **labels) == 3
    assert value(after, "handoff_http_request_duration_seconds_bucket", **labels, le="+Inf") >= 3


async def test_every_family_is_exposed_with_help_and_type(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    exposed = {family.name for family in text_string_to_metric_families(text)}
    assert exposed >= FAMILIES
    for name in FAMILIES:
        assert f"# HELP {name}" in text


async def test_the_key_cache_counts_hits_and_misses(client: httpx.AsyncClient, tenant: Tenant) -> None:
    before = await scrape(client)
    for _ in range(4):
        ok(await client.get("/v1/sessions", headers=tenant.headers))  # one lookup, then three cached answers
    after = await scrape(client)
    hits = value(after, "handoff_api_key_cache_total", result="hit") - value(
        before, "handoff_api_key_cache_total", result="hit"
    )
    misses = value(after, "handoff_api_key_cache_total", result="miss") - value(
        before, "handoff_api_key_cache_total", result="miss"
    )
    assert (hits, misses) == (3, 1)


@pytest.mark.parametrize(
    ("record", "name", "labels", "amount"),
    [
        (lambda: metrics.entries_appended("work_log", 3), "handoff_entries_appended_total", {"kind": "work_log"}, 3),
        (lambda: metrics.entries_appended("artifacts", 0), "handoff_entries_appended_total", {"kind": "artifacts"}, 0),
        (lambda: metrics.page_sealed("artifacts"), "handoff_page_seals_total", {"kind": "artifacts"}, 1),
        (lambda: metrics.blob_bytes_in(1024), "handoff_blob_bytes_total", {"direction": "in"}, 1024),
        (lambda: metrics.blob_bytes_out(10), "handoff_blob_bytes_total", {"direction": "out"}, 10),
        (
            lambda: metrics.event_streamed("work_log.appended", 2),
            "handoff_events_streamed_total",
            {"type": "work_log.appended"},
            2,
        ),
        (lambda: metrics.claim("empty"), "handoff_claims_total", {"outcome": "empty"}, 1),
        (lambda: metrics.mongodb_error("AutoReconnect"), "handoff_mongodb_errors_total", {"kind": "AutoReconnect"}, 1),
    ],
)
async def test_each_recording_function_moves_its_own_sample(
    client: httpx.AsyncClient, record: Callable[[], None], name: str, labels: dict[str, str], amount: float
) -> None:
    before = await scrape(client)
    record()
    after = await scrape(client)
    assert value(after, name, **labels) - value(before, name, **labels) == amount


async def test_subscribers_count_open_streams_only(client: httpx.AsyncClient) -> None:
    before = value(await scrape(client), "handoff_event_subscribers")
    with metrics.subscribed(), metrics.subscribed():
        assert value(await scrape(client), "handoff_event_subscribers") == before + 2
    assert value(await scrape(client), "handoff_event_subscribers") == before


# The token and the switch --------------------------------------------------------------------------------------


@pytest.fixture
def token_app(settings: Settings, database: MongoDatabase) -> Litestar:
    return create_app(settings.model_copy(update={"metrics_token": SecretStr("s3cret-scrape")}), database=database)


async def test_the_metrics_token_is_required_when_set(token_app: Litestar, tenant: Tenant) -> None:
    async with in_process(token_app) as client:
        problem(await client.get("/metrics"), 401)
        problem(await client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
        problem(await client.get("/metrics", headers=tenant.headers), 401)  # an API key is not the scrape token
        await scrape(client, Authorization="Bearer s3cret-scrape")


async def test_metrics_can_be_switched_off(settings: Settings, database: MongoDatabase) -> None:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}), database=database)
    async with in_process(app) as client:
        problem(await client.get("/metrics"), 404)


def test_the_token_and_the_switch_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_METRICS_TOKEN", "from-env")
    monkeypatch.setenv("HANDOFF_METRICS_ENABLED", "false")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # empty is unset
    loaded = Settings(data_dir=Path("/nonexistent"))
    assert loaded.metrics_token is not None
    assert loaded.metrics_token.get_secret_value() == "from-env"
    assert "from-env" not in repr(loaded)
    assert (loaded.metrics_enabled, loaded.prometheus_multiproc_dir) == (False, None)


# Events and claims, counted where they happen (issue 17: "events streamed and subscribers, claims by outcome") ---


def deltas(before: Samples, after: Samples, name: str, label: str, values: Iterable[str]) -> dict[str, float]:
    """How much each labelled sample of ``name`` moved, for every value of ``label`` (the ones that did not: 0)."""
    return {item: value(after, name, **{label: item}) - value(before, name, **{label: item}) for item in values}


async def test_an_event_stream_counts_its_subscriber_and_each_event_it_sends(
    settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    """One SSE stream of the workspace, through a real socket: ``handoff_event_subscribers`` is 1 more while it is
    open (and back once it has ended), ``handoff_events_streamed_total`` moves by exactly the events it received,
    by type."""
    app = create_app(settings.model_copy(update={"claim_sweep_interval_seconds": 0}), database=database)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, headers=tenant.headers, timeout=20) as http:
        session_id = ok(await http.post("/v1/sessions", json={"agent_type": "counted"}), 201)["session_id"]
        before = await scrape(http)
        async with http.stream("GET", "/v1/events") as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            assert await anext(lines) == ": subscribed"  # the stream follows the workspace from here on
            batch = {"entries": [{"message": f"step {i}"} for i in range(3)]}
            ok(await http.post(f"/v1/sessions/{session_id}/work-log/batch", json=batch), 201)
            ok(await http.post(f"/v1/sessions/{session_id}/artifacts", json={"path": "a.py"}), 201)
            ok(await http.post(f"/v1/sessions/{session_id}/pause"))
            received: list[str] = []
            while len(received) < 5:
                line = await anext(lines)
                if line.startswith("event: "):
                    received.append(line.removeprefix("event: "))
            during = await scrape(http)
    after_close = parse(metrics.exposition(None).decode())  # the server has stopped: every stream of it has ended

    assert received == ["work_log.appended"] * 3 + ["artifact.recorded", "session.updated"]
    streamed = deltas(before, during, "handoff_events_streamed_total", "type", get_args(metrics.EventType))
    assert streamed == {kind: float(received.count(kind)) for kind in get_args(metrics.EventType)}
    assert value(during, "handoff_event_subscribers") - value(before, "handoff_event_subscribers") == 1
    assert value(after_close, "handoff_event_subscribers") == value(before, "handoff_event_subscribers")


async def test_claims_are_counted_by_outcome_once_each(
    settings: Settings, database: MongoDatabase, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known claim traffic, every outcome: five claimed (one a takeover of a lapsed claim), one empty, one
    released, one completed (counted when the claim is first read after its replay completed, and only then), two
    expired (one by the takeover, one by the sweep). The app's own sweep is off: only this test's traffic counts."""
    pinned = clock.now()
    monkeypatch.setattr(clock, "now", lambda: pinned)
    app = create_app(settings.model_copy(update={"claim_sweep_interval_seconds": 0}), database=database)
    async with in_process(app) as client:
        api = Api(client, tenant)

        async def claim() -> dict[str, Any] | None:
            response = await client.post("/v1/handoffs/claim", json={"lease_seconds": 60}, headers=tenant.headers)
            return None if response.status_code == 204 else ok(response, 201)

        for _ in range(3):
            await api.post((await api.create())["session_id"], "handoff", {"summary": "over to you"})
        before = await scrape(client)
        first = await claim()
        assert first is not None
        ok(await client.post(f"/v1/claims/{first['claim_id']}/release", json={}, headers=tenant.headers))
        held = [await claim() for _ in range(3)]
        assert all(held)
        assert await claim() is None
        completed, *lapsing = [item for item in held if item is not None]
        await api.post(completed["session"]["session_id"], "complete", {"summary": "done"})
        for _ in range(2):  # the first read settles the completion and counts it; the second counts nothing
            assert ok(await client.get(f"/v1/claims/{completed['claim_id']}", headers=tenant.headers))["state"] == (
                "completed"
            )
        pinned += timedelta(seconds=61)
        assert await claim() is not None  # takes over one lapsed handoff: that claim is counted expired here
        assert len((await sweep.sweep()).expired) == 1  # the other lapsed claim
        states = [
            ok(await client.get(f"/v1/claims/{item['claim_id']}", headers=tenant.headers))["state"] for item in lapsing
        ]
        after = await scrape(client)

    assert states == ["expired", "expired"]
    outcomes = deltas(before, after, "handoff_claims_total", "outcome", get_args(metrics.ClaimOutcome))
    assert outcomes == {"claimed": 5, "empty": 1, "released": 1, "completed": 1, "expired": 2}
