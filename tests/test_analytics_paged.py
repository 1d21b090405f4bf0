"""Analytics over the paged log: the errors and artifacts routes count entries on sealed pages as well as on the
open page, exactly, and never another workspace's.

Pages of four entries, so the sessions written here span many sealed pages of both kinds.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import httpx

from handoff.analytics import pipelines, service
from handoff.analytics.expressions import ALL_TIME
from handoff.sessions.models import PAGES_BY_START_INDEX, LogPage, filter_index_name
from tests.api import Api, ok
from tests.factories import Tenant, small_pages_app

ACTIONS = ["created", "modified", "modified", "deleted"]


app = small_pages_app()


async def write_log(api: Api, session_id: str, *, entries: int, artifacts: int, tag: str) -> None:
    """Every third entry an error; artifacts cycle over five paths and four actions."""
    for n in range(entries):
        kind = "error" if n % 3 == 0 else "info"
        await api.post(session_id, "work-log", {"id": f"{tag}-e{n}", "message": f"{tag} {kind} {n}", "type": kind}, 201)
    for n in range(artifacts):
        body = {"id": f"{tag}-a{n}", "path": f"src/{tag if n % 2 else 'shared'}/f{n % 5}.py", "action": ACTIONS[n % 4]}
        await api.post(session_id, "artifacts", body, 201)


async def analytics(client: httpx.AsyncClient, tenant: Tenant, route: str, **params: object) -> list[dict[str, object]]:
    body = ok(await client.get(f"/v1/analytics/{route}", params=params, headers=tenant.headers))
    items: list[dict[str, object]] = body["items"]
    return items


async def test_errors_and_artifacts_include_sealed_pages(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    api, other = Api(client, tenant), Api(client, other_tenant)
    written: dict[str, dict[str, int]] = {}
    for tag, entries, artifacts in (("alpha", 30, 22), ("beta", 12, 9), ("gamma", 2, 1)):
        session = await api.create(agent_type=f"agent-{tag}")
        await write_log(api, session["session_id"], entries=entries, artifacts=artifacts, tag=tag)
        written[session["session_id"]] = {"entries": entries, "artifacts": artifacts}
    noise = await other.create(agent_type="noise")
    await write_log(other, noise["session_id"], entries=30, artifacts=30, tag="alpha")
    assert await LogPage.find({"workspace_id": tenant.workspace.workspace_id, "kind": "artifacts"}).count() > 4
    assert await LogPage.find({"workspace_id": tenant.workspace.workspace_id, "kind": "work_log"}).count() > 6

    errors = await analytics(client, tenant, "errors", limit=100)
    expected_messages = [
        f"{tag} error {n}" for tag, count in (("alpha", 30), ("beta", 12), ("gamma", 2)) for n in range(0, count, 3)
    ]
    assert sorted(str(row["message"]) for row in errors) == sorted(expected_messages)
    assert [row["timestamp"] for row in errors] == sorted((row["timestamp"] for row in errors), reverse=True)
    assert {str(row["agent_type"]) for row in errors} == {"agent-alpha", "agent-beta", "agent-gamma"}
    newest = await analytics(client, tenant, "errors", limit=5)
    assert newest == errors[:5]

    touches: Counter[str] = Counter()
    by_action: dict[str, Counter[str]] = defaultdict(Counter)
    sessions: dict[str, set[str]] = defaultdict(set)
    for tag, count in (("alpha", 22), ("beta", 9), ("gamma", 1)):
        for n in range(count):
            path = f"src/{tag if n % 2 else 'shared'}/f{n % 5}.py"
            touches[path] += 1
            by_action[path][ACTIONS[n % 4]] += 1
            sessions[path].add(tag)
    rows = await analytics(client, tenant, "artifacts", limit=100)
    assert {str(row["path"]): row["touches"] for row in rows} == dict(touches)
    for row in rows:
        path = str(row["path"])
        assert {action: row[action] for action in ("created", "modified", "deleted")} == {
            action: by_action[path][action] for action in ("created", "modified", "deleted")
        }
        assert row["sessions"] == len(sessions[path])
    assert sum(written[sid]["artifacts"] for sid in written) == sum(touches.values())

    ws = tenant.workspace.workspace_id
    for pipeline, hint, pages_index in (
        (pipelines.artifacts(ws, ALL_TIME, 100), pipelines.ARTIFACTS_INDEX, PAGES_BY_START_INDEX),
        (pipelines.errors(ws, ALL_TIME, 100), None, filter_index_name("work_log", "error")),  # error pages only
    ):
        verdict = await service.explain(pipeline, hint=hint)
        assert pages_index in verdict.indexes, verdict
        assert "COLLSCAN" not in verdict.stages
