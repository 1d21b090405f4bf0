"""The API-key guard on the ``/v1`` routes: who gets in, and the one answer for everyone who does not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from handoff import auth, cache, clock
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.errors import PROBLEM_JSON
from handoff.workspaces import service as workspaces
from tests.factories import Tenant, make_tenant
from tests.inprocess import in_process

ROUTE = "/v1/sessions"


class FakeMonotonic:
    """The guard's cache clock, frozen and moved only by hand (the event loop keeps the real one).

    Frozen, not real time plus an offset: a slow moment on a busy machine must not age a cache entry by itself.
    """

    def __init__(self) -> None:
        self.base = time.monotonic()
        self.offset = 0.0

    def monotonic(self) -> float:
        return self.base + self.offset


@pytest.fixture
def cache_clock(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(cache, "time", SimpleNamespace(monotonic=fake.monotonic))  # the key cache is a TtlCache
    return fake


@pytest.fixture
async def uncached(settings: Settings, database: MongoDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the key cache off: every request looks its key up."""
    app = create_app(settings.model_copy(update={"api_key_cache_seconds": 0}), database=database)
    async with in_process(app) as test_client:
        yield test_client


def _assert_unauthorized(response: Any) -> dict[str, Any]:
    assert response.status_code == 401
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["detail"]
    return body


async def _reference_401(client: httpx.AsyncClient) -> dict[str, Any]:
    return _assert_unauthorized(await client.get(ROUTE))


async def _stored_key(database: MongoDatabase, key_id: str) -> dict[str, Any]:
    found = await database["api_keys"].find_one({"key_id": key_id})
    assert found is not None
    return found


async def test_valid_key_lists_sessions(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(ROUTE, headers=tenant.headers)

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(ROUTE, headers={"Authorization": f"bearer {tenant.secret}"})

    assert response.status_code == 200


async def test_missing_header_is_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    _assert_unauthorized(await client.get(ROUTE))


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Token {secret}",
        "{secret}",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Bearer not-a-key",
        "Bearer hk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "Bearer {secret}x",
    ],
    ids=[
        "basic",
        "token-scheme",
        "no-scheme",
        "bearer-without-key",
        "bearer-space",
        "bearer-blanks",
        "not-a-key",
        "unknown-key",
        "altered-key",
    ],
)
async def test_bad_authorization_is_401_with_the_same_body(
    client: httpx.AsyncClient, tenant: Tenant, header: str
) -> None:
    reference = await _reference_401(client)

    response = await client.get(ROUTE, headers={"Authorization": header.format(secret=tenant.secret)})

    assert _assert_unauthorized(response) == reference


async def test_revoked_key_is_401_with_the_same_body(uncached: httpx.AsyncClient, tenant: Tenant) -> None:
    reference = await _reference_401(uncached)
    assert (await uncached.get(ROUTE, headers=tenant.headers)).status_code == 200

    await workspaces.revoke_api_key(tenant.key_id)

    assert _assert_unauthorized(await uncached.get(ROUTE, headers=tenant.headers)) == reference


async def test_expired_key_is_401_with_the_same_body(client: httpx.AsyncClient, database: MongoDatabase) -> None:
    reference = await _reference_401(client)
    expired = await make_tenant("expired", expires_in_days=1)
    await database["api_keys"].update_one(
        {"key_id": expired.key_id}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )

    assert _assert_unauthorized(await client.get(ROUTE, headers=expired.headers)) == reference


async def test_key_with_future_expiry_is_accepted(client: httpx.AsyncClient, database: MongoDatabase) -> None:
    expiring = await make_tenant("expiring", expires_in_days=1)

    assert (await client.get(ROUTE, headers=expiring.headers)).status_code == 200


async def test_every_v1_route_needs_a_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reference = await _reference_401(client)

    for method, path, body in [
        ("POST", "/v1/sessions", {}),
        ("GET", "/v1/sessions/sess_1", None),
        ("POST", "/v1/sessions/sess_1/actions", {"action": "x"}),
        ("GET", "/v1/plans", None),
        ("POST", "/v1/plans", {"slug": "p", "title": "P"}),
        ("GET", "/v1/analytics/summary", None),
    ]:
        response = await client.request(method, path, json=body)
        assert _assert_unauthorized(response) == reference, (method, path)


async def test_probes_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_revocation_takes_effect_within_the_cache_window(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings, cache_clock: FakeMonotonic
) -> None:
    assert settings.api_key_cache_seconds <= 5
    assert (await client.get(ROUTE, headers=tenant.headers)).status_code == 200

    await workspaces.revoke_api_key(tenant.key_id)
    cache_clock.offset = settings.api_key_cache_seconds

    _assert_unauthorized(await client.get(ROUTE, headers=tenant.headers))


async def test_cached_key_spares_the_lookup_within_the_window(
    client: httpx.AsyncClient, tenant: Tenant, cache_clock: FakeMonotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await client.get(ROUTE, headers=tenant.headers)).status_code == 200
    lookups: list[str] = []
    real_authenticate = workspaces.authenticate

    async def counting(secret: str) -> Any:
        lookups.append(secret)
        return await real_authenticate(secret)

    monkeypatch.setattr(auth.workspaces, "authenticate", counting)

    cache_clock.offset = 4.9
    assert (await client.get(ROUTE, headers=tenant.headers)).status_code == 200
    assert lookups == []
    cache_clock.offset = 5.0
    assert (await client.get(ROUTE, headers=tenant.headers)).status_code == 200
    assert lookups == [tenant.secret]


async def test_revocation_is_immediate_without_a_cache(uncached: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await uncached.get(ROUTE, headers=tenant.headers)).status_code == 200

    await workspaces.revoke_api_key(tenant.key_id)

    _assert_unauthorized(await uncached.get(ROUTE, headers=tenant.headers))


async def test_keys_are_stored_only_as_hashes(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: MongoDatabase
) -> None:
    assert (await client.get(ROUTE, headers=tenant.headers)).status_code == 200

    stored = repr([doc async for doc in database["api_keys"].find({})])

    for secret in (tenant.secret, other_tenant.secret):
        assert secret not in stored
        assert secret[11:] not in stored
        assert workspaces.hash_key(secret) in stored


async def test_last_used_is_written_at_most_once_a_minute(
    uncached: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = clock.now()
    current = [start]
    monkeypatch.setattr(clock, "now", lambda: current[0])

    assert (await uncached.get(ROUTE, headers=tenant.headers)).status_code == 200
    assert (await _stored_key(database, tenant.key_id))["last_used_at"] == start

    current[0] = start + timedelta(seconds=59)
    assert (await uncached.get(ROUTE, headers=tenant.headers)).status_code == 200
    assert (await _stored_key(database, tenant.key_id))["last_used_at"] == start

    current[0] = start + timedelta(seconds=61)
    assert (await uncached.get(ROUTE, headers=tenant.headers)).status_code == 200
    assert (await _stored_key(database, tenant.key_id))["last_used_at"] == start + timedelta(seconds=61)


async def test_one_key_opens_only_its_own_workspace(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    created = await client.post(ROUTE, json={"agent_type": "claude"}, headers=tenant.headers)
    assert created.status_code == 201
    session_id = created.json()["session_id"]

    assert created.json()["workspace_id"] == tenant.workspace.workspace_id
    assert created.json()["agent_api_key_id"] == tenant.key_id
    assert (await client.get(f"{ROUTE}/{session_id}", headers=other_tenant.headers)).status_code == 404
    assert (await client.get(ROUTE, headers=other_tenant.headers)).json()["items"] == []
