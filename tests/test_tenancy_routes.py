"""No route leaks across workspaces (api.md: "A resource that exists in another workspace is answered exactly
like one that does not exist: 404").

The list of routes comes from the app itself, so a route added later is called here too: the test fails until
the route has a case below, which keeps a new route from escaping the tenancy check. Another workspace holds
a session and a plan that every kind of query would find if it forgot the workspace filter (a stale active
session with errors, artifacts and a plan; a paused session with handoff notes; a replay of it; a
claimed handoff and one still waiting); this
workspace's key is used against all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from handoff import clock
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.errors import PROBLEM_JSON
from handoff.localdb import MongodProcess
from tests.factories import Tenant

Check = Callable[[httpx.Response], None]


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    """One app for the module (building one costs far more than a test here)."""
    return create_app(
        Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent")), database=database
    )


def _empty_items(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def _no_sessions_page(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


def _empty_summary(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sessions"]["total"] == 0
    assert set(body["sessions"]["by_status"].values()) <= {0}
    assert body["sessions"]["by_agent_type"] in ({}, [])
    assert body["actions"] == body["errors"] == body["checkpoints"] == body["artifacts"] == 0


def _created_apart(status: int) -> Check:
    def check(response: httpx.Response) -> None:
        assert response.status_code == status, response.text

    return check


@dataclass(frozen=True)
class Case:
    """How one route is called with this workspace's key, and what it must answer."""

    body: Any = None
    query: str = ""
    check: Check | None = None  # None: a 404 problem
    stage: int = 0  # creates something in this workspace: runs after the reads (stage 0), in stage order
    extra: list[tuple[str, Any, Check]] = field(default_factory=list)  # more (query, body, check) calls
    #: An event stream that opens for this workspace and never ends by itself: the in-process client reads a
    #: body whole, so it is called over a socket in tests/test_events_api.py (test_no_event_crosses_workspaces).
    stream: bool = False


#: Every /v1 route: (method, path as the app declares it) -> its case.
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/v1/sessions"): Case(
        check=_no_sessions_page,
        extra=[
            ("?external_id=ext-theirs", None, _no_sessions_page),
            ("?plan=shared-slug", None, _no_sessions_page),
            ("?status=paused", None, _no_sessions_page),
        ],
    ),
    ("POST", "/v1/sessions"): Case(
        body={"plan": "shared-slug"},
        check=_created_apart(422),  # their plan does not exist here
        stage=1,
        extra=[("", {"external_id": "ext-theirs"}, _created_apart(201))],  # a new session, not theirs
    ),
    ("GET", "/v1/sessions/{session_id:str}"): Case(),
    ("DELETE", "/v1/sessions/{session_id:str}"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/touch"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/pause"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/resume"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/complete"): Case(body={"summary": "s"}),
    ("POST", "/v1/sessions/{session_id:str}/fail"): Case(body={"reason": "r"}),
    ("POST", "/v1/sessions/{session_id:str}/end"): Case(body={"status": "completed"}),
    ("POST", "/v1/sessions/{session_id:str}/actions"): Case(body={"action": "a", "id": "theirs-1"}),
    ("POST", "/v1/sessions/{session_id:str}/work-log"): Case(body={"message": "m", "id": "theirs-2"}),
    ("GET", "/v1/sessions/{session_id:str}/work-log"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/work-log/batch"): Case(
        body={"entries": [{"message": "m", "id": "theirs-2"}]}
    ),
    ("GET", "/v1/sessions/{session_id:str}/work-log/{entry_id:str}"): Case(),
    ("DELETE", "/v1/sessions/{session_id:str}/work-log/{entry_id:str}"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/work-log/pop"): Case(),
    ("DELETE", "/v1/sessions/{session_id:str}/work-log"): Case(),
    ("GET", "/v1/sessions/{session_id:str}/recent-actions"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/artifacts"): Case(body={"path": "p", "id": "theirs-3"}),
    ("GET", "/v1/sessions/{session_id:str}/artifacts"): Case(),
    ("GET", "/v1/sessions/{session_id:str}/artifacts/{entry_id:str}"): Case(),
    ("DELETE", "/v1/sessions/{session_id:str}/artifacts/{entry_id:str}"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/artifacts/pop"): Case(),
    ("DELETE", "/v1/sessions/{session_id:str}/artifacts"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/blobs"): Case(),  # an upload (empty body) into their session
    ("GET", "/v1/sessions/{session_id:str}/blobs"): Case(),
    ("GET", "/v1/sessions/{session_id:str}/blobs/{blob_id:str}"): Case(),
    ("DELETE", "/v1/sessions/{session_id:str}/blobs/{blob_id:str}"): Case(),
    ("PUT", "/v1/sessions/{session_id:str}/context"): Case(body={"k": 1}),
    ("PATCH", "/v1/sessions/{session_id:str}/context"): Case(body={"k": 1}),
    ("POST", "/v1/sessions/{session_id:str}/handoff"): Case(body={"summary": "s"}),
    ("GET", "/v1/sessions/{session_id:str}/handoff-context"): Case(),
    ("GET", "/v1/sessions/{session_id:str}/replay-context"): Case(),
    ("GET", "/v1/sessions/{session_id:str}/mcp-context"): Case(),
    ("POST", "/v1/sessions/{session_id:str}/replay"): Case(body={"agent_type": "thief"}),
    ("GET", "/v1/plans"): Case(check=_empty_items),
    ("POST", "/v1/plans"): Case(body={"slug": "shared-slug", "title": "Mine"}, check=_created_apart(201), stage=2),
    ("GET", "/v1/plans/{slug:str}"): Case(),
    ("PATCH", "/v1/plans/{slug:str}"): Case(body={"title": "stolen"}),
    ("PATCH", "/v1/plans/{slug:str}/tasks"): Case(body={"phase": "build", "task": "t1", "status": "completed"}),
    ("GET", "/v1/plans/{slug:str}/sessions"): Case(),
    ("GET", "/v1/analytics/summary"): Case(check=_empty_summary),
    ("GET", "/v1/analytics/agents"): Case(check=_empty_items),
    ("GET", "/v1/analytics/activity"): Case(check=_empty_items, extra=[("?bucket=hour", None, _empty_items)]),
    ("GET", "/v1/analytics/artifacts"): Case(check=_empty_items),
    ("GET", "/v1/analytics/errors"): Case(check=_empty_items),
    ("GET", "/v1/analytics/stale"): Case(query="?idle_minutes=1", check=_empty_items),
    ("GET", "/v1/analytics/handoffs"): Case(check=_empty_items),
    ("GET", "/v1/analytics/lineage/{session_id:str}"): Case(),
    ("POST", "/v1/handoffs/claim"): Case(body={}, check=_created_apart(204)),  # their waiting handoff is not ours
    ("GET", "/v1/claims"): Case(check=_no_sessions_page, extra=[("?state=active", None, _no_sessions_page)]),
    ("GET", "/v1/claims/{claim_id:str}"): Case(),
    ("POST", "/v1/claims/{claim_id:str}/heartbeat"): Case(),
    ("POST", "/v1/claims/{claim_id:str}/release"): Case(body={"reason": "r"}),
    ("GET", "/v1/sessions/{session_id:str}/events"): Case(),
    ("GET", "/v1/events"): Case(stream=True),
}


def v1_routes(app: Litestar) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under /v1, read from the app itself."""
    found = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path.startswith("/v1"):
            found |= {(method, route.path) for method in route.methods if method not in {"OPTIONS", "HEAD"}}
    return found


#: The id of their session's first work-log entry and of its artifact.
THEIR_ENTRY = "theirs-entry"


def _url(path: str, theirs: dict[str, str]) -> str:
    filled = path.replace("{session_id:str}", theirs["session_id"]).replace("{slug:str}", theirs["slug"])
    filled = filled.replace("{entry_id:str}", THEIR_ENTRY).replace("{blob_id:str}", theirs.get("blob_id", ""))
    return filled.replace("{claim_id:str}", theirs.get("claim_id", ""))


def _not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON


async def _their_world(client: httpx.AsyncClient, other: Tenant, database: MongoDatabase) -> dict[str, str]:
    """Data in the other workspace that any unscoped query would find."""
    h = other.headers
    plan = {"slug": "shared-slug", "title": "Theirs", "phases": [{"name": "build", "tasks": [{"name": "t1"}]}]}
    assert (await client.post("/v1/plans", json=plan, headers=h)).status_code == 201
    created = await client.post(
        "/v1/sessions", json={"plan": "shared-slug", "agent_type": "coder", "external_id": "ext-theirs"}, headers=h
    )
    sid = created.json()["session_id"]
    for path, body in [
        ("actions", {"action": "a", "id": THEIR_ENTRY}),
        ("work-log", {"message": "boom", "type": "error"}),
        ("work-log", {"message": "cp", "type": "checkpoint"}),
        ("artifacts", {"path": "secret.py", "action": "created", "id": THEIR_ENTRY}),
    ]:
        assert (await client.post(f"/v1/sessions/{sid}/{path}", json=body, headers=h)).status_code == 201
    blob = await client.post(f"/v1/sessions/{sid}/blobs", content=b"their bytes", headers=h)
    assert blob.status_code == 201, blob.text
    handed = (await client.post("/v1/sessions", json={"agent_type": "coder"}, headers=h)).json()["session_id"]
    assert (await client.post(f"/v1/sessions/{handed}/handoff", json={"summary": "s"}, headers=h)).status_code == 200
    waiting = (await client.post("/v1/sessions", json={"agent_type": "coder"}, headers=h)).json()["session_id"]
    assert (await client.post(f"/v1/sessions/{waiting}/handoff", json={"summary": "w"}, headers=h)).status_code == 200
    claim = await client.post("/v1/handoffs/claim", json={}, headers=h)  # one of the two handoffs; the other waits
    assert claim.status_code == 201, claim.text
    assert (await client.post(f"/v1/sessions/{sid}/replay", headers=h)).status_code == 201
    finished = (await client.post("/v1/sessions", json={"agent_type": "coder"}, headers=h)).json()["session_id"]
    assert (await client.post(f"/v1/sessions/{finished}/complete", headers=h)).status_code == 200
    stale = clock.now() - timedelta(hours=3)
    await database["sessions"].update_one({"session_id": sid}, {"$set": {"last_active_at": stale}})
    return {
        "session_id": sid,
        "slug": "shared-slug",
        "workspace_id": other.workspace.workspace_id,
        "blob_id": blob.json()["blob_id"],
        "claim_id": claim.json()["claim_id"],
    }


async def _snapshot(database: MongoDatabase, workspace_id: str) -> list[list[dict[str, Any]]]:
    return [
        await database[name].find({"workspace_id": workspace_id}, {"_id": 0}).sort("created_at").to_list(None)
        for name in ("sessions", "log_pages", "plans", "claims")
    ] + [await database["fs.files"].find({"metadata.workspace_id": workspace_id}).to_list(None)]


async def test_every_v1_route_has_a_tenancy_case(app: Litestar) -> None:
    routes = v1_routes(app)

    assert routes - set(CASES) == set(), "a /v1 route without a tenancy case: add it to CASES"
    assert set(CASES) - routes == set(), "a tenancy case for a route that no longer exists"


async def test_every_v1_route_with_this_workspaces_key_cannot_reach_another_workspace(
    app: Litestar, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: MongoDatabase
) -> None:
    theirs = await _their_world(client, other_tenant, database)
    before = await _snapshot(database, theirs["workspace_id"])
    routes = v1_routes(app)
    assert routes == set(CASES)
    called: set[tuple[str, str]] = set()

    for (method, path), case in sorted(CASES.items(), key=lambda item: item[1].stage):
        if case.stream:
            called.add((method, path))
            continue
        for query, body, check in [(case.query, case.body, case.check or _not_found), *case.extra]:
            response = await client.request(method, _url(path, theirs) + query, json=body, headers=tenant.headers)
            try:
                check(response)
            except AssertionError as exc:
                raise AssertionError(f"{method} {path}{query}: {exc}") from exc
        called.add((method, path))

    assert called == routes
    assert await _snapshot(database, theirs["workspace_id"]) == before
    # The control: the same reads with their own key find their data, so each 404 or empty list was tenancy.
    for method, path in sorted(routes):
        if CASES[method, path].stream or path.endswith("/events"):
            continue  # a stream of their own events: never ends, so not read whole here
        if method == "GET" and "{" in path:
            response = await client.get(_url(path, theirs), headers=other_tenant.headers)
            assert response.status_code == 200, f"{path}: {response.text}"
        elif method == "GET":
            case = CASES[method, path]
            for query in [case.query, *(extra[0] for extra in case.extra)]:
                body = (await client.get(path + query, headers=other_tenant.headers)).json()
                assert body.get("items") or body.get("sessions", {}).get("total"), f"{path}{query}: {body}"


async def test_every_v1_route_without_a_key_is_401(
    app: Litestar, client: httpx.AsyncClient, other_tenant: Tenant, database: MongoDatabase
) -> None:
    theirs = await _their_world(client, other_tenant, database)
    before = await _snapshot(database, theirs["workspace_id"])

    for method, path in sorted(v1_routes(app)):
        case = CASES.get((method, path), Case())
        for headers in ({}, {"Authorization": "Bearer hk_not_a_key"}):
            response = await client.request(method, _url(path, theirs) + case.query, json=case.body, headers=headers)
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON

    assert await _snapshot(database, theirs["workspace_id"]) == before
