"""The plans REST contract (api.md: Plans): creation, listing, updates, task status and progress, the sessions
of a plan, and the plan a session names.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from handoff import clock
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.errors import PROBLEM_JSON
from handoff.localdb import MongodProcess
from tests.factories import Tenant

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
PLAN_FIELDS = {"slug", "title", "description", "phases", "current_phase", "progress", "created_at", "updated_at"}

ROADMAP = {
    "slug": "roadmap",
    "title": "Q4 roadmap",
    "description": "What ships this quarter",
    "phases": [
        {"name": "design", "tasks": [{"name": "spec", "status": "completed"}, {"name": "review"}]},
        {"name": "build", "tasks": [{"name": "api", "status": "in_progress"}, {"name": "review"}]},
        {"name": "launch"},
    ],
    "current_phase": "build",
}


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    """One app for the module (building one costs far more than a test here)."""
    return create_app(
        Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent")), database=database
    )


class Plans:
    """Calls of one tenant to ``/v1/plans``."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant) -> None:
        self.client = client
        self.headers = tenant.headers

    async def call(self, method: str, path: str = "", body: Any = None) -> httpx.Response:
        return await self.client.request(method, f"/v1/plans{path}", json=body, headers=self.headers)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return ok(await self.call("POST", "", body), 201)

    async def task(self, slug: str, phase: str, task: str, status: str) -> httpx.Response:
        return await self.call("PATCH", f"/{slug}/tasks", {"phase": phase, "task": task, "status": status})


@pytest.fixture
def plans(client: httpx.AsyncClient, tenant: Tenant) -> Plans:
    return Plans(client, tenant)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# Create, list, get -------------------------------------------------------------------------------------------


async def test_create_plan_answers_201_with_phases_defaults_and_progress(plans: Plans) -> None:
    plan = await plans.create(ROADMAP)

    assert set(plan) == PLAN_FIELDS
    assert ISO_UTC.match(plan["created_at"])
    assert plan["updated_at"] == plan["created_at"]
    assert plan == {
        "slug": "roadmap",
        "title": "Q4 roadmap",
        "description": "What ships this quarter",
        "phases": [
            {
                "name": "design",
                "tasks": [{"name": "spec", "status": "completed"}, {"name": "review", "status": "pending"}],
            },
            {
                "name": "build",
                "tasks": [{"name": "api", "status": "in_progress"}, {"name": "review", "status": "pending"}],
            },
            {"name": "launch", "tasks": []},
        ],
        "current_phase": "build",
        "progress": {"total_tasks": 4, "completed_tasks": 1, "percentage": 25},
        "created_at": plan["created_at"],
        "updated_at": plan["created_at"],
    }
    assert ok(await plans.call("GET", "/roadmap")) == plan


async def test_create_minimal_plan_has_no_tasks_and_zero_percent(plans: Plans) -> None:
    plan = await plans.create({"slug": "tiny", "title": "Tiny"})

    assert {key: plan[key] for key in ("description", "phases", "current_phase", "progress")} == {
        "description": None,
        "phases": [],
        "current_phase": None,
        "progress": {"total_tasks": 0, "completed_tasks": 0, "percentage": 0},
    }


async def test_create_plan_with_a_duplicate_slug_is_409_and_keeps_the_first(plans: Plans) -> None:
    first = await plans.create({"slug": "dup", "title": "First"})

    body = problem(await plans.call("POST", "", {"slug": "dup", "title": "Second"}), 409)

    assert "dup" in body["detail"]
    assert ok(await plans.call("GET", "/dup")) == first


async def test_create_plan_with_invalid_input_is_422(
    plans: Plans, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    invalid: list[dict[str, Any]] = [
        {"title": "no slug"},
        {"slug": "no-title"},
        {"slug": "", "title": "t"},
        {"slug": "Upper", "title": "t"},
        {"slug": "has space", "title": "t"},
        {"slug": "-leading", "title": "t"},
        {"slug": "x" * 101, "title": "t"},
        {"slug": {"$gt": ""}, "title": "t"},
        {"slug": "ok", "title": ""},
        {"slug": "ok", "title": "t", "owner": "typo"},
        {"slug": "ok", "title": "t", "phases": [{"name": "a", "tasks": [{"name": "x", "status": "done"}]}]},
        {"slug": "ok", "title": "t", "phases": [{"name": "a", "task": []}]},
        {"slug": "ok", "title": "t", "phases": [{"name": "a"}, {"name": "a"}]},
        {"slug": "ok", "title": "t", "phases": [{"name": "a"}], "current_phase": "b"},
        {"slug": "ok", "title": "t", "current_phase": "a"},
    ]
    for body in invalid:
        with subtests.test(body=str(body)[:60]):
            problem(await plans.call("POST", "", body), 422)
    assert await database["plans"].count_documents({}) == 0


async def test_list_plans_by_slug(plans: Plans) -> None:
    created = [await plans.create({"slug": slug, "title": slug.upper()}) for slug in ("beta", "alpha", "gamma")]

    listing = ok(await plans.call("GET"))

    assert set(listing) == {"items"}
    assert listing["items"] == sorted(created, key=lambda plan: plan["slug"])


async def test_list_plans_of_a_workspace_without_plans_is_empty(plans: Plans) -> None:
    assert ok(await plans.call("GET")) == {"items": []}


async def test_unknown_plan_is_404(plans: Plans, subtests: pytest.Subtests) -> None:
    for method, path, body in [
        ("GET", "/nope", None),
        ("PATCH", "/nope", {"title": "t"}),
        ("PATCH", "/nope/tasks", {"phase": "a", "task": "b", "status": "completed"}),
        ("GET", "/nope/sessions", None),
        ("GET", "/%24gt", None),
        ("GET", "/a.b", None),
    ]:
        with subtests.test(method, path=path):
            problem(await plans.call(method, path, body), 404)


# Update ------------------------------------------------------------------------------------------------------


async def test_patch_plan_sets_given_fields_and_keeps_the_others(plans: Plans, monkeypatch: pytest.MonkeyPatch) -> None:
    created = await plans.create(ROADMAP)
    later = clock.now() + timedelta(minutes=5)
    monkeypatch.setattr(clock, "now", lambda: later)

    renamed = ok(await plans.call("PATCH", "/roadmap", {"title": "Renamed"}))
    moved = ok(await plans.call("PATCH", "/roadmap", {"current_phase": "launch", "description": None}))

    assert renamed == created | {"title": "Renamed", "updated_at": later.isoformat(timespec="microseconds")}
    assert moved == renamed | {"current_phase": "launch", "description": None}
    assert ok(await plans.call("GET", "/roadmap")) == moved


async def test_patch_plan_with_an_empty_body_changes_only_updated_at(plans: Plans) -> None:
    created = await plans.create(ROADMAP)

    patched = ok(await plans.call("PATCH", "/roadmap", {}))

    assert patched | {"updated_at": created["updated_at"]} == created


async def test_patch_plan_with_invalid_input_is_422_and_changes_nothing(
    plans: Plans, subtests: pytest.Subtests
) -> None:
    created = await plans.create(ROADMAP)

    for body in [
        {"current_phase": "nope"},
        {"title": None},
        {"title": ""},
        {"slug": "renamed"},
        {"phases": []},
        {"title": {"$set": "x"}},
    ]:
        with subtests.test(body=body):
            problem(await plans.call("PATCH", "/roadmap", body), 422)
            assert ok(await plans.call("GET", "/roadmap")) == created


# Tasks and progress ------------------------------------------------------------------------------------------


async def test_task_status_updates_move_the_integer_percentage(plans: Plans) -> None:
    await plans.create(
        {
            "slug": "three",
            "title": "Three tasks",
            "phases": [{"name": "p", "tasks": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}],
        }
    )
    progress = []

    for task, status in [
        ("a", "completed"),
        ("b", "in_progress"),
        ("b", "completed"),
        ("c", "completed"),
        ("a", "pending"),
    ]:
        plan = ok(await plans.task("three", "p", task, status))
        progress.append(plan["progress"])

    assert progress == [
        {"total_tasks": 3, "completed_tasks": 1, "percentage": 33},
        {"total_tasks": 3, "completed_tasks": 1, "percentage": 33},
        {"total_tasks": 3, "completed_tasks": 2, "percentage": 66},
        {"total_tasks": 3, "completed_tasks": 3, "percentage": 100},
        {"total_tasks": 3, "completed_tasks": 2, "percentage": 66},
    ]
    assert [t["status"] for t in plan["phases"][0]["tasks"]] == ["pending", "completed", "completed"]
    assert ok(await plans.call("GET", "/three")) == plan


async def test_task_update_touches_only_the_named_phase(plans: Plans) -> None:
    await plans.create(ROADMAP)

    plan = ok(await plans.task("roadmap", "build", "review", "completed"))

    assert plan["phases"][0]["tasks"][1] == {"name": "review", "status": "pending"}
    assert plan["phases"][1]["tasks"][1] == {"name": "review", "status": "completed"}
    assert plan["progress"] == {"total_tasks": 4, "completed_tasks": 2, "percentage": 50}


async def test_task_update_of_an_unknown_phase_or_task_is_404_and_changes_nothing(plans: Plans) -> None:
    created = await plans.create(ROADMAP)

    unknown_phase = problem(await plans.task("roadmap", "ship", "spec", "completed"), 404)
    unknown_task = problem(await plans.task("roadmap", "design", "api", "completed"), 404)
    empty_phase = problem(await plans.task("roadmap", "launch", "spec", "completed"), 404)

    assert "ship" in unknown_phase["detail"]
    assert "api" in unknown_task["detail"]
    assert "spec" in empty_phase["detail"]
    assert ok(await plans.call("GET", "/roadmap")) == created


async def test_task_update_with_invalid_input_is_422(plans: Plans, subtests: pytest.Subtests) -> None:
    created = await plans.create(ROADMAP)

    for body in [
        {"phase": "design", "task": "spec", "status": "done"},
        {"phase": "design", "task": "spec"},
        {"phase": "design", "status": "completed"},
        {"phase": "", "task": "spec", "status": "completed"},
        {"phase": {"$ne": ""}, "task": "spec", "status": "completed"},
        {"phase": "design", "task": "spec", "status": "completed", "note": "typo"},
    ]:
        with subtests.test(body=body):
            problem(await plans.call("PATCH", "/roadmap/tasks", body), 422)
    assert ok(await plans.call("GET", "/roadmap")) == created


# Plans and sessions ------------------------------------------------------------------------------------------


async def test_plan_sessions_lists_the_sessions_of_that_plan_newest_first(
    plans: Plans, client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    await plans.create({"slug": "a", "title": "A"})
    await plans.create({"slug": "b", "title": "B"})
    at = clock.now()
    monkeypatch.setattr(clock, "now", lambda: at)
    made = []
    for plan in ("a", "b", "a", None, "a"):
        at += timedelta(seconds=1)
        response = await client.post("/v1/sessions", json={"plan": plan}, headers=tenant.headers)
        made.append(ok(response, 201))

    of_a = ok(await plans.call("GET", "/a/sessions"))
    of_b = ok(await plans.call("GET", "/b/sessions"))
    unused = await plans.create({"slug": "c", "title": "C"})

    assert set(of_a) == {"items"}
    assert of_a["items"] == [made[4], made[2], made[0]]
    assert of_b["items"] == [made[1]]
    assert ok(await plans.call("GET", f"/{unused['slug']}/sessions")) == {"items": []}


async def test_session_with_an_unknown_plan_slug_is_422(
    plans: Plans, client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    await plans.create({"slug": "known", "title": "K"})

    body = problem(await client.post("/v1/sessions", json={"plan": "unknown"}, headers=tenant.headers), 422)
    known = await client.post("/v1/sessions", json={"plan": "known"}, headers=tenant.headers)

    assert body["errors"] == [{"field": "plan", "message": "no such plan"}]
    assert ok(known, 201)["plan"] == "known"
    assert await database["sessions"].count_documents({}) == 1


async def test_handoff_context_shows_plan_progress_as_tasks_complete(
    plans: Plans, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await plans.create(ROADMAP)
    sid = ok(await client.post("/v1/sessions", json={"plan": "roadmap"}, headers=tenant.headers), 201)["session_id"]
    ok(await plans.task("roadmap", "build", "api", "completed"))
    ok(await plans.call("PATCH", "/roadmap", {"current_phase": "launch"}))

    context = ok(await client.get(f"/v1/sessions/{sid}/handoff-context", headers=tenant.headers))
    replay = ok(await client.get(f"/v1/sessions/{sid}/replay-context", headers=tenant.headers))

    assert context["plan"] == {
        "slug": "roadmap",
        "title": "Q4 roadmap",
        "current_phase": "launch",
        "progress": {"total_tasks": 4, "completed_tasks": 2, "percentage": 50},
    }
    assert replay["plan"] == {"slug": "roadmap", "title": "Q4 roadmap", "current_phase": "launch"}
