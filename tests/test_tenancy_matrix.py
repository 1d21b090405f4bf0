"""The tenancy matrix: every route of the app's route table, called as one workspace with the other's ids.

Two workspaces get the same kind of data (a plan, sessions with work logs, artifacts, context, handoff notes,
a replay, an ended session), each tagged with a marker string of its own. Then every ``/v1`` route and method
that the route table holds, and every MCP tool behind ``/mcp``, is called with the first workspace's key and
the *second* workspace's session ids and plan slug: a route that names a resource must answer 404 (exactly as
for a resource that does not exist), a listing or an aggregate must answer without anything of the other
workspace, and afterwards the other workspace's documents must be byte-for-byte what they were. The routes
come from the route table, not from a list kept here, so a new route without a case fails the test.

Revoked, expired, unknown and missing keys answer the same 401 problem on every route.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from litestar import Litestar
from litestar.routes import ASGIRoute, HTTPRoute

from handoff import clock
from handoff.db import MongoDatabase
from handoff.errors import PROBLEM_JSON
from handoff.workspaces import service as workspaces
from tests.factories import Tenant

#: A valid body for every route that takes one, so that a refusal can only be about tenancy.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/sessions"): {"agent_type": "matrix"},
    ("POST", "/v1/sessions/{session_id}/complete"): {"summary": "done"},
    ("POST", "/v1/sessions/{session_id}/fail"): {"reason": "broken"},
    ("POST", "/v1/sessions/{session_id}/end"): {"status": "completed"},
    ("POST", "/v1/sessions/{session_id}/actions"): {"action": "ran tests", "id": "matrix-1"},
    ("POST", "/v1/sessions/{session_id}/work-log"): {"message": "note", "type": "checkpoint", "id": "matrix-2"},
    ("POST", "/v1/sessions/{session_id}/work-log/batch"): {"entries": [{"message": "a"}, {"message": "b"}]},
    ("POST", "/v1/sessions/{session_id}/artifacts"): {"path": "src/x.py", "action": "created", "id": "matrix-3"},
    ("PUT", "/v1/sessions/{session_id}/context"): {"goal": "overwrite"},
    ("PATCH", "/v1/sessions/{session_id}/context"): {"goal": "merge"},
    ("POST", "/v1/sessions/{session_id}/handoff"): {"summary": "over to you", "next_steps": ["x"]},
    ("POST", "/v1/sessions/{session_id}/replay"): {"agent_type": "thief"},
    ("POST", "/v1/plans"): {"slug": "matrix-plan", "title": "Matrix"},
    ("PATCH", "/v1/plans/{slug}"): {"title": "taken over"},
    ("PATCH", "/v1/plans/{slug}/tasks"): {"phase": "build", "task": "write code", "status": "completed"},
    ("POST", "/v1/handoffs/claim"): {"agent_type": "matrix"},
    ("POST", "/v1/claims/{claim_id}/release"): {"reason": "taken over"},
}
#: Routes with no id whose right answer is "nothing here for you" rather than a 200 (nothing of this workspace waits).
EMPTY_ANSWERS = {("POST", "/v1/handoffs/claim"): 204}
#: Event streams of this workspace never end by themselves, and the in-process client reads a body whole: their
#: tenancy is tested over a socket in tests/test_events_api.py (test_no_event_crosses_workspaces).
STREAMS = {("GET", "/v1/events")}

#: Query strings that aim a listing at the other workspace's values (filled in per workspace).
LISTING_FILTERS = ("external_id", "plan", "agent_type")

#: Arguments for every MCP tool (``session_id`` and ``plan`` are filled with the other workspace's).
MCP_ARGUMENTS: dict[str, dict[str, Any]] = {
    "start_session": {"agent_type": "matrix"},
    "log_work": {"message": "note", "type": "checkpoint", "id": "mcp-1"},
    "log_action": {"action": "ran", "id": "mcp-2"},
    "record_artifact": {"path": "src/y.py", "id": "mcp-3"},
    "attach_file": {"path": "src/z.py", "content": "their file", "id": "mcp-4"},
    "update_context": {"context": {"goal": "mine now"}},
    "handoff": {"summary": "taken"},
    "get_handoff_context": {},
    "get_replay_context": {},
    "replay_session": {},
    "complete_session": {"summary": "done"},
    "fail_session": {"reason": "broken"},
    "list_waiting_handoffs": {},
    "claim_handoff": {},
    "heartbeat_claim": {},
    "release_claim": {"reason": "not mine"},
}
ABSENT_SESSION = "sess_00000000-0000-4000-8000-000000000000"
ABSENT_SLUG = "no-such-plan"
ENTRY = "step-1"  # the id of a work-log entry and of an artifact of every session the tests populate
ABSENT_BLOB = "blob_00000000000000000000000000000000"
ABSENT_CLAIM = "clm_000000000000000000000000"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
NO_ID_MCP_TOOLS = {"start_session", "list_waiting_handoffs", "claim_handoff"}


@dataclass(frozen=True)
class Holdings:
    """What one workspace owns, and the marker string every piece of its data carries."""

    tenant: Tenant
    marker: str
    session_id: str  # paused, with a work log, artifacts, context and handoff notes
    ended_id: str
    replay_id: str
    slug: str
    external_id: str
    blob_id: str  # a blob of ``session_id``, its bytes carrying the marker
    claim_id: str  # a claim of a second handoff (a third one still waits)
    waiting_id: str

    @property
    def secrets(self) -> list[str]:
        """Strings that must never appear in an answer to the other workspace."""
        return [
            self.marker,
            self.session_id,
            self.ended_id,
            self.replay_id,
            self.blob_id,
            self.claim_id,
            self.waiting_id,
            self.tenant.workspace.workspace_id,
        ]


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), (response.request.method, response.request.url, response.text)
    body: dict[str, Any] = response.json()
    return body


async def _populate(client: httpx.AsyncClient, tenant: Tenant, marker: str) -> Holdings:
    """Give a workspace a plan, a handed-off session with everything in it, its replay and an ended session."""
    headers = tenant.headers
    slug = f"plan-{marker}"
    await _ok(
        await client.post(
            "/v1/plans",
            headers=headers,
            json={"slug": slug, "title": marker, "phases": [{"name": "build", "tasks": [{"name": "write code"}]}]},
        )
    )
    session = await _ok(
        await client.post(
            "/v1/sessions",
            headers={**headers, "Idempotency-Key": f"idem-{marker}"},
            json={
                "agent_type": f"agent-{marker}",
                "plan": slug,
                "context_summary": {"secret": marker},
                "external_id": f"ext-{marker}",
            },
        )
    )
    sid = session["session_id"]
    base = f"/v1/sessions/{sid}"
    await _ok(await client.post(f"{base}/actions", headers=headers, json={"action": f"read {marker}", "id": ENTRY}))
    for entry_type in ("checkpoint", "error", "decision"):
        await _ok(
            await client.post(
                f"{base}/work-log", headers=headers, json={"message": f"{entry_type} {marker}", "type": entry_type}
            )
        )
    await _ok(await client.post(f"{base}/artifacts", headers=headers, json={"path": f"src/{marker}.py", "id": ENTRY}))
    blob = await _ok(await client.post(f"{base}/blobs", headers=headers, content=f"bytes of {marker}".encode()))
    await _ok(await client.patch(f"{base}/context", headers=headers, json={"more": marker}))
    await _ok(await client.post(f"{base}/handoff", headers=headers, json={"summary": f"handoff {marker}"}))
    replay = await _ok(await client.post(f"{base}/replay", headers=headers, json={}))
    ended = await _ok(await client.post("/v1/sessions", headers=headers, json={"agent_type": f"agent-{marker}"}))
    await _ok(await client.post(f"/v1/sessions/{ended['session_id']}/fail", headers=headers, json={"reason": marker}))
    handed = []
    for _ in range(2):
        other = await _ok(await client.post("/v1/sessions", headers=headers, json={"agent_type": f"agent-{marker}"}))
        handoff = {"summary": f"queued {marker}"}
        await _ok(await client.post(f"/v1/sessions/{other['session_id']}/handoff", headers=headers, json=handoff))
        handed.append(other["session_id"])
    claim = await client.post("/v1/handoffs/claim", headers=headers, json={})
    assert claim.status_code == 201, claim.text
    assert claim.json()["handoff_session_id"] == handed[0]  # the oldest; the other one waits
    return Holdings(
        tenant,
        marker,
        sid,
        ended["session_id"],
        replay["session_id"],
        slug,
        f"ext-{marker}",
        blob["blob_id"],
        claim.json()["claim_id"],
        handed[1],
    )


def _http_routes(app: Litestar) -> list[tuple[str, str]]:
    """(method, path template) of every /v1 route in the route table, OPTIONS aside (it carries no data)."""
    found = []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path_format.startswith("/v1/"):
            found += [(method, route.path_format) for method in sorted(route.methods) if method != "OPTIONS"]
    return found


def _takes_body(app: Litestar, method: str, template: str) -> bool:
    route = next(r for r in app.routes if isinstance(r, HTTPRoute) and r.path_format == template)
    handler = route.route_handler_map[method][0]
    return "data" in handler.parsed_fn_signature.parameters


def _fill(template: str, *, session_id: str, slug: str, blob_id: str, claim_id: str) -> str:
    names = set(re.findall(r"{(\w+)}", template))
    known = {"session_id", "slug", "entry_id", "blob_id", "claim_id"}
    assert names <= known, f"no value for the path parameters of {template}: {names}"
    filled = template.replace("{session_id}", session_id).replace("{slug}", slug).replace("{entry_id}", ENTRY)
    return filled.replace("{blob_id}", blob_id).replace("{claim_id}", claim_id)


def _leaks(text: str, owner: Holdings, *, sent: str = "") -> list[str]:
    """The owner's secrets in an answer, apart from those the caller sent itself (a 404 names the id asked for)."""
    return [secret for secret in owner.secrets if secret in text and secret not in sent]


async def _snapshot(database: MongoDatabase, workspace_id: str) -> list[dict[str, Any]]:
    """Every document of a workspace, in a stable order."""
    docs: list[dict[str, Any]] = []
    for collection in ("sessions", "log_pages", "plans", "api_keys", "workspaces", "claims"):
        docs += await database[collection].find({"workspace_id": workspace_id}).sort("_id", 1).to_list(None)
    files = await database["fs.files"].find({"metadata.workspace_id": workspace_id}).sort("_id", 1).to_list(None)
    chunks = database["fs.chunks"].find({"files_id": {"$in": [file["_id"] for file in files]}}).sort("_id", 1)
    return docs + files + await chunks.to_list(None)


async def _mcp(client: httpx.AsyncClient, tenant: Tenant | None, method: str, params: dict[str, Any]) -> httpx.Response:
    headers = {**MCP_HEADERS, **(tenant.headers if tenant else {})}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return await client.post("/mcp", headers=headers, content=json.dumps(body))


async def test_every_route_keeps_the_other_workspace_out(
    client: httpx.AsyncClient, app: Litestar, database: MongoDatabase, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await _populate(client, tenant, "acme-7f3a")
    theirs = await _populate(client, other_tenant, "globex-c91e")
    before = await _snapshot(database, theirs.tenant.workspace.workspace_id)
    routes = _http_routes(app)
    missing_bodies = {(m, p) for m, p in routes if _takes_body(app, m, p)} - BODIES.keys()
    assert not missing_bodies, f"routes without a matrix case: {sorted(missing_bodies)}"

    outcomes: list[str] = []
    for method, template in routes:
        if (method, template) in STREAMS:
            continue
        for session_id in (theirs.session_id, theirs.ended_id, theirs.replay_id, theirs.waiting_id):
            path = _fill(
                template, session_id=session_id, slug=theirs.slug, blob_id=theirs.blob_id, claim_id=theirs.claim_id
            )
            body = BODIES.get((method, template))
            response = await client.request(method, path, headers=mine.tenant.headers, json=body)
            leaked = _leaks(response.text, theirs, sent=path)
            outcomes.append(f"{method} {path} -> {response.status_code}")
            assert not leaked, f"{method} {path} answered {response.status_code} with {leaked}: {response.text[:300]}"
            if "{" in template:
                assert response.status_code == 404, outcomes[-1] + f" {response.text[:300]}"
                assert response.headers["content-type"].startswith(PROBLEM_JSON)
                # Exactly the answer for an id that exists nowhere.
                absent = _fill(
                    template, session_id=ABSENT_SESSION, slug=ABSENT_SLUG, blob_id=ABSENT_BLOB, claim_id=ABSENT_CLAIM
                )
                nowhere = await client.request(method, absent, headers=mine.tenant.headers, json=body)
                swapped = nowhere.text.replace(ABSENT_SESSION, session_id).replace(ABSENT_SLUG, theirs.slug)
                swapped = swapped.replace(ABSENT_BLOB, theirs.blob_id).replace(ABSENT_CLAIM, theirs.claim_id)
                assert (nowhere.status_code, swapped) == (404, response.text), outcomes[-1]
            else:
                expected = (EMPTY_ANSWERS[method, template],) if (method, template) in EMPTY_ANSWERS else (200, 201)
                assert response.status_code in expected, outcomes[-1] + f" {response.text[:300]}"
            if "{session_id}" not in template:
                break  # one call is enough where the session id plays no part
    # Listings aimed at the other workspace's values find nothing.
    for name in LISTING_FILTERS:
        value = {"external_id": theirs.external_id, "plan": theirs.slug, "agent_type": f"agent-{theirs.marker}"}[name]
        listed = await client.get("/v1/sessions", headers=mine.tenant.headers, params={name: value})
        assert listed.status_code == 200
        assert listed.json()["items"] == [], name
    # The aggregates count this workspace alone: 2 sessions of its own + 1 replay + the matrix's own creations.
    summary = (await client.get("/v1/analytics/summary", headers=mine.tenant.headers)).json()
    own = (await client.get("/v1/sessions", headers=mine.tenant.headers, params={"limit": 200})).json()["items"]
    assert summary["sessions"]["total"] == len(own)
    assert {s["workspace_id"] for s in own} == {mine.tenant.workspace.workspace_id}

    assert await _snapshot(database, theirs.tenant.workspace.workspace_id) == before


async def test_every_mcp_tool_keeps_the_other_workspace_out(
    client: httpx.AsyncClient, app: Litestar, database: MongoDatabase, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert any(isinstance(route, ASGIRoute) and route.path == "/mcp" for route in app.routes)
    mine = await _populate(client, tenant, "acme-5d20")
    theirs = await _populate(client, other_tenant, "globex-e4b8")
    before = await _snapshot(database, theirs.tenant.workspace.workspace_id)
    listed = await _mcp(client, mine.tenant, "tools/list", {})
    assert listed.status_code == 200, listed.text
    tools = {tool["name"]: tool for tool in listed.json()["result"]["tools"]}
    assert tools.keys() == MCP_ARGUMENTS.keys(), "an MCP tool without a matrix case"

    for name, tool in tools.items():
        arguments = dict(MCP_ARGUMENTS[name])
        if "session_id" in tool["inputSchema"].get("properties", {}):
            arguments["session_id"] = theirs.session_id
        if "claim_id" in tool["inputSchema"].get("properties", {}):
            arguments["claim_id"] = theirs.claim_id
        response = await _mcp(client, mine.tenant, "tools/call", {"name": name, "arguments": arguments})
        assert response.status_code == 200, (name, response.text)
        result = response.json()["result"]
        assert not _leaks(response.text, theirs, sent=json.dumps(arguments)), (name, response.text[:300])
        if name in NO_ID_MCP_TOOLS:
            assert not result.get("isError"), (name, response.text[:300])
        else:
            assert result.get("isError"), (name, response.text[:300])
            assert "404" in result["content"][0]["text"], (name, response.text[:300])
    # Starting a session with the other workspace's plan or external id neither finds nor joins theirs.
    for arguments in ({"plan": theirs.slug}, {"external_id": theirs.external_id}):
        response = await _mcp(client, mine.tenant, "tools/call", {"name": "start_session", "arguments": arguments})
        assert not _leaks(response.text, theirs, sent=json.dumps(arguments)), (arguments, response.text[:300])
    resource = await _mcp(client, mine.tenant, "resources/read", {"uri": f"handoff://sessions/{theirs.session_id}"})
    assert "error" in resource.json(), resource.text[:300]
    assert not _leaks(resource.text, theirs, sent=theirs.session_id)

    assert await _snapshot(database, theirs.tenant.workspace.workspace_id) == before


async def test_same_names_in_two_workspaces_are_two_resources(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Plan slugs, external ids and Idempotency-Keys are unique per workspace: reusing the other's is no clash."""
    theirs = await _populate(client, other_tenant, "globex-0b7d")
    headers = tenant.headers

    plan = await client.post("/v1/plans", headers=headers, json={"slug": theirs.slug, "title": "mine"})
    by_external = await client.post("/v1/sessions", headers=headers, json={"external_id": theirs.external_id})
    by_key = await client.post(
        "/v1/sessions", headers={**headers, "Idempotency-Key": f"idem-{theirs.marker}"}, json={"agent_type": "mine"}
    )
    with_their_plan = await client.post("/v1/sessions", headers=headers, json={"plan": theirs.slug})

    assert plan.status_code == 201
    assert plan.json()["title"] == "mine"
    assert by_external.status_code == 201
    assert by_external.json()["session_id"] not in theirs.secrets
    assert by_key.status_code == 201
    assert by_key.json()["session_id"] not in theirs.secrets
    assert with_their_plan.status_code == 201  # the slug now names this workspace's own plan
    assert with_their_plan.json()["workspace_id"] == tenant.workspace.workspace_id


async def test_revoked_expired_unknown_and_missing_keys_get_the_same_401_everywhere(
    client: httpx.AsyncClient, app: Litestar, database: MongoDatabase, tenant: Tenant
) -> None:
    mine = await _populate(client, tenant, "acme-91aa")
    revoked_key, revoked = await workspaces.create_api_key(tenant.workspace.slug, name="revoked")
    await workspaces.revoke_api_key(revoked_key.key_id)
    expired_key, expired = await workspaces.create_api_key(tenant.workspace.slug, name="expired", expires_in_days=1)
    await database["api_keys"].update_one(
        {"key_id": expired_key.key_id}, {"$set": {"expires_at": clock.now() - timedelta(seconds=1)}}
    )
    credentials = {
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "unknown": {"Authorization": f"Bearer {workspaces.KEY_PREFIX}{'x' * 43}"},
        "missing": {},
    }
    before = await _snapshot(database, tenant.workspace.workspace_id)
    reference: dict[str, Any] | None = None

    for method, template in [*_http_routes(app), ("POST", "/mcp")]:
        path = _fill(template, session_id=mine.session_id, slug=mine.slug, blob_id=mine.blob_id, claim_id=mine.claim_id)
        body = BODIES.get((method, template))
        for kind, headers in credentials.items():
            if template == "/mcp":
                response = await client.post(path, headers={**MCP_HEADERS, **headers}, content=b"{}")
            else:
                response = await client.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, f"{kind} key: {method} {path} -> {response.status_code}"
            assert response.headers["content-type"].startswith(PROBLEM_JSON)
            if method == "HEAD":  # the same answer, without its body
                assert response.content == b""
                continue
            reference = reference or response.json()
            assert response.json() == reference, f"{kind} key: {method} {path} told something apart"
            assert not _leaks(response.text, mine)

    assert await _snapshot(database, tenant.workspace.workspace_id) == before
