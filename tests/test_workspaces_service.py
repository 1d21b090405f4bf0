"""Workspaces and API keys through the domain service, against the real database."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handoff import clock
from handoff.db import MongoDatabase
from handoff.errors import Conflict, Invalid, NotFound, Unauthorized
from handoff.workspaces import service
from handoff.workspaces.models import ApiKey
from handoff.workspaces.schemas import Principal

T0 = datetime(2026, 11, 24, 15, 30, 0, 123000, tzinfo=UTC)


class FrozenClock:
    """``clock.now`` pinned to a time a test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    pinned = FrozenClock(T0)
    monkeypatch.setattr(clock, "now", pinned)
    return pinned


async def _stored_key(database: MongoDatabase, key_id: str) -> dict[str, Any]:
    found = await database["api_keys"].find_one({"key_id": key_id})
    assert found is not None
    return found


# Workspaces ---------------------------------------------------------------------------------------------------


async def test_create_workspace_stores_slug_name_and_id(database: MongoDatabase) -> None:
    workspace = await service.create_workspace("acme", name="Acme Inc")

    assert workspace.slug == "acme"
    assert workspace.name == "Acme Inc"
    assert re.fullmatch(r"ws_[0-9a-f]{16}", workspace.workspace_id)
    stored = await database["workspaces"].find_one({"slug": "acme"})
    assert stored is not None
    assert stored["workspace_id"] == workspace.workspace_id
    assert stored["name"] == "Acme Inc"
    assert isinstance(stored["created_at"], datetime)


async def test_workspace_name_defaults_to_its_slug(database: MongoDatabase) -> None:
    workspace = await service.create_workspace("globex")

    assert workspace.name == "globex"


async def test_duplicate_workspace_slug_conflicts(database: MongoDatabase) -> None:
    await service.create_workspace("acme")

    with pytest.raises(Conflict, match="acme"):
        await service.create_workspace("acme", name="Another Acme")

    assert await database["workspaces"].count_documents({}) == 1


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "Acme",
        "-acme",
        "acme-",
        "ac me",
        "acme_inc",
        "a" * 65,
        "acmé",
        "acme\n",
    ],
)
async def test_invalid_workspace_slug_is_refused(database: MongoDatabase, slug: str) -> None:
    with pytest.raises(Invalid):
        await service.create_workspace(slug)

    assert await database["workspaces"].count_documents({}) == 0


@pytest.mark.parametrize("slug", ["a", "a1", "acme-inc", "x" * 64])
async def test_valid_workspace_slugs_are_accepted(database: MongoDatabase, slug: str) -> None:
    workspace = await service.create_workspace(slug)

    assert workspace.slug == slug


async def test_workspaces_are_listed_by_slug(database: MongoDatabase) -> None:
    for slug in ["globex", "acme", "initech"]:
        await service.create_workspace(slug)

    assert [w.slug for w in await service.list_workspaces()] == ["acme", "globex", "initech"]


async def test_unknown_workspace_is_not_found(database: MongoDatabase) -> None:
    with pytest.raises(NotFound, match="nope"):
        await service.get_workspace("nope")


# Keys ---------------------------------------------------------------------------------------------------------


async def test_new_key_is_hk_and_32_random_bytes_urlsafe(database: MongoDatabase) -> None:
    await service.create_workspace("acme")

    key, secret = await service.create_api_key("acme", name="ci")

    assert re.fullmatch(r"hk_[A-Za-z0-9_-]{43,}", secret)
    assert key.prefix == secret[:11]
    assert key.name == "ci"
    assert re.fullmatch(r"key_[0-9a-f]{16}", key.key_id)


async def test_key_is_stored_only_as_its_sha256(database: MongoDatabase) -> None:
    workspace = await service.create_workspace("acme")
    key, secret = await service.create_api_key("acme", name="ci")

    stored = await _stored_key(database, key.key_id)

    assert stored["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert stored["workspace_id"] == workspace.workspace_id
    assert stored["prefix"] == secret[:11]
    assert stored["revoked_at"] is None
    assert stored["expires_at"] is None
    everything = repr([doc async for doc in database["api_keys"].find({})])
    assert secret not in everything
    assert secret[11:] not in everything  # beyond the display prefix, nothing of the secret is kept


async def test_two_keys_are_different(database: MongoDatabase) -> None:
    await service.create_workspace("acme")

    (first, first_secret), (second, second_secret) = [await service.create_api_key("acme") for _ in range(2)]

    assert first_secret != second_secret
    assert first.key_id != second.key_id
    assert first.secret_sha256 != second.secret_sha256


async def test_key_for_unknown_workspace_is_not_found(database: MongoDatabase) -> None:
    with pytest.raises(NotFound):
        await service.create_api_key("nope")

    assert await database["api_keys"].count_documents({}) == 0


@pytest.mark.parametrize("days", [0, -1])
async def test_key_expiry_must_be_at_least_a_day(database: MongoDatabase, days: int) -> None:
    await service.create_workspace("acme")

    with pytest.raises(Invalid):
        await service.create_api_key("acme", expires_in_days=days)

    assert await database["api_keys"].count_documents({}) == 0


async def test_key_expiry_past_the_calendar_is_invalid(database: MongoDatabase) -> None:
    await service.create_workspace("acme")

    with pytest.raises(Invalid):
        await service.create_api_key("acme", expires_in_days=10**8)


async def test_key_with_expiry_expires_that_many_days_after_creation(
    database: MongoDatabase, frozen: FrozenClock
) -> None:
    await service.create_workspace("acme")

    key, _ = await service.create_api_key("acme", expires_in_days=30)

    assert key.created_at == T0
    assert key.expires_at == T0 + timedelta(days=30)
    stored = await _stored_key(database, key.key_id)
    assert stored["expires_at"] == T0 + timedelta(days=30)


async def test_keys_are_listed_per_workspace_oldest_first(database: MongoDatabase, frozen: FrozenClock) -> None:
    await service.create_workspace("acme")
    await service.create_workspace("globex")
    created = []
    for name in ["second", "first"]:
        created.append((await service.create_api_key("acme", name=name))[0].key_id)
        frozen.advance(timedelta(seconds=1))
    await service.create_api_key("globex", name="other")

    listed = await service.list_api_keys("acme")

    assert [k.key_id for k in listed] == created
    assert [k.name for k in listed] == ["second", "first"]


async def test_listing_keys_of_unknown_workspace_is_not_found(database: MongoDatabase) -> None:
    with pytest.raises(NotFound):
        await service.list_api_keys("nope")


async def test_revoking_a_key_records_when(database: MongoDatabase, frozen: FrozenClock) -> None:
    await service.create_workspace("acme")
    key, _ = await service.create_api_key("acme")
    frozen.advance(timedelta(minutes=5))

    revoked = await service.revoke_api_key(key.key_id)

    assert revoked.revoked_at == T0 + timedelta(minutes=5)
    assert (await _stored_key(database, key.key_id))["revoked_at"] == T0 + timedelta(minutes=5)


async def test_revoking_twice_keeps_the_first_revocation_time(database: MongoDatabase, frozen: FrozenClock) -> None:
    await service.create_workspace("acme")
    key, _ = await service.create_api_key("acme")
    await service.revoke_api_key(key.key_id)
    frozen.advance(timedelta(hours=1))

    again = await service.revoke_api_key(key.key_id)

    assert again.revoked_at == T0
    assert (await _stored_key(database, key.key_id))["revoked_at"] == T0


async def test_revoking_unknown_key_is_not_found(database: MongoDatabase) -> None:
    with pytest.raises(NotFound, match="key_nope"):
        await service.revoke_api_key("key_nope")


# Authentication -----------------------------------------------------------------------------------------------


async def test_valid_key_resolves_to_its_workspace(database: MongoDatabase) -> None:
    workspace = await service.create_workspace("acme")
    key, secret = await service.create_api_key("acme")

    principal = await service.authenticate(secret)

    assert principal == Principal(workspace_id=workspace.workspace_id, api_key_id=key.key_id)


async def test_every_kind_of_bad_key_gets_the_same_answer(database: MongoDatabase, frozen: FrozenClock) -> None:
    await service.create_workspace("acme")
    revoked, revoked_secret = await service.create_api_key("acme")
    await service.revoke_api_key(revoked.key_id)
    _, expiring_secret = await service.create_api_key("acme", expires_in_days=1)
    frozen.advance(timedelta(days=1))

    messages = []
    for secret in ["", "not-a-key", "hk_" + "A" * 43, revoked_secret, expiring_secret]:
        with pytest.raises(Unauthorized) as caught:
            await service.authenticate(secret)
        messages.append(caught.value.detail)

    assert len(set(messages)) == 1


async def test_key_works_until_the_moment_it_expires(database: MongoDatabase, frozen: FrozenClock) -> None:
    await service.create_workspace("acme")
    _, secret = await service.create_api_key("acme", expires_in_days=1)

    frozen.advance(timedelta(days=1) - timedelta(milliseconds=1))
    await service.authenticate(secret)
    frozen.advance(timedelta(milliseconds=1))
    with pytest.raises(Unauthorized):
        await service.authenticate(secret)


async def test_a_key_is_refused_once_revoked(database: MongoDatabase) -> None:
    await service.create_workspace("acme")
    key, secret = await service.create_api_key("acme")
    await service.authenticate(secret)

    await service.revoke_api_key(key.key_id)

    with pytest.raises(Unauthorized):
        await service.authenticate(secret)


async def test_last_used_is_written_at_most_once_a_minute(database: MongoDatabase, frozen: FrozenClock) -> None:
    await service.create_workspace("acme")
    key, secret = await service.create_api_key("acme")
    assert (await _stored_key(database, key.key_id))["last_used_at"] is None

    await service.authenticate(secret)
    assert (await _stored_key(database, key.key_id))["last_used_at"] == T0

    frozen.advance(timedelta(seconds=59))
    await service.authenticate(secret)
    assert (await _stored_key(database, key.key_id))["last_used_at"] == T0

    frozen.advance(timedelta(seconds=2))
    await service.authenticate(secret)
    assert (await _stored_key(database, key.key_id))["last_used_at"] == T0 + timedelta(seconds=61)


async def test_refused_key_does_not_record_a_use(database: MongoDatabase) -> None:
    await service.create_workspace("acme")
    key, secret = await service.create_api_key("acme")
    await service.revoke_api_key(key.key_id)

    with pytest.raises(Unauthorized):
        await service.authenticate(secret)

    assert (await _stored_key(database, key.key_id))["last_used_at"] is None


def test_key_usability_reads_naive_expiry_as_utc() -> None:
    key = ApiKey.model_construct(
        key_id="key_1",
        workspace_id="ws_1",
        prefix="hk_abcdefgh",
        secret_sha256="0" * 64,
        expires_at=datetime(2026, 1, 1, 12, 0),  # naive, as an old driver might return it
    )

    assert service.key_is_usable(key, datetime(2026, 1, 1, 11, 59, tzinfo=UTC))
    assert not service.key_is_usable(key, datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert not service.key_is_usable(key.model_copy(update={"revoked_at": T0}), datetime(2026, 1, 1, 11, 0, tzinfo=UTC))
