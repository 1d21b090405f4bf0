"""Workspace and API-key rules, shared by the CLI and the auth guard.

Keys are ``hk_`` followed by 32 random bytes (url-safe base64). Only their SHA-256 is stored, so a leaked
database does not leak working keys; the first characters are kept as a prefix to tell keys apart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from handoff import clock
from handoff.errors import Conflict, Invalid, NotFound, Unauthorized
from handoff.workspaces.models import ApiKey, Workspace
from handoff.workspaces.schemas import Principal

KEY_PREFIX = "hk_"
DISPLAY_PREFIX_CHARS = 11  # "hk_" + 8 characters of the secret
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_KEY_LIFETIME_DAYS = 36_500  # a century; further dates overflow datetime
MAX_RETENTION_DAYS = 36_500
SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def hash_key(secret: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_workspace(slug: str, *, name: str | None = None) -> Workspace:
    """Create a workspace; its slug must be new."""
    if not SLUG_PATTERN.fullmatch(slug):
        raise Invalid(f"workspace slug {slug!r} must be 1-64 lowercase letters, digits and dashes")
    workspace = Workspace(workspace_id=f"ws_{secrets.token_hex(8)}", slug=slug, name=name or slug)
    try:
        await workspace.insert()
    except DuplicateKeyError as exc:
        raise Conflict(f"workspace {slug!r} already exists") from exc
    return workspace


async def list_workspaces() -> list[Workspace]:
    """Every workspace, by slug."""
    return await Workspace.find_all().sort("+slug").to_list()


async def get_workspace(slug: str) -> Workspace:
    """The workspace with this slug."""
    workspace = await Workspace.find_one(Workspace.slug == slug)
    if workspace is None:
        raise NotFound(f"no workspace {slug!r}")
    return workspace


async def set_retention(slug: str, *, ended_after_days: int | None) -> Workspace:
    """Keep the workspace's ended sessions for ``ended_after_days`` after they end (None: keep them for ever)."""
    if ended_after_days is not None and not 1 <= ended_after_days <= MAX_RETENTION_DAYS:
        raise Invalid(f"ended_after_days must be between 1 and {MAX_RETENTION_DAYS}")
    found = await Workspace.get_pymongo_collection().find_one_and_update(
        {"slug": slug},
        {"$set": {"retention_ended_after_days": ended_after_days, "updated_at": clock.now()}},
        projection={"_id": 1},
    )
    if found is None:
        raise NotFound(f"no workspace {slug!r}")
    return await get_workspace(slug)


async def create_api_key(
    workspace_slug: str, *, name: str | None = None, expires_in_days: int | None = None
) -> tuple[ApiKey, str]:
    """Issue a key for a workspace; returns the stored record and the secret, which exists only here."""
    workspace = await get_workspace(workspace_slug)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_KEY_LIFETIME_DAYS:
        raise Invalid(f"expires_in_days must be between 1 and {MAX_KEY_LIFETIME_DAYS}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    created = clock.now()
    key = ApiKey(
        key_id=f"key_{secrets.token_hex(8)}",
        workspace_id=workspace.workspace_id,
        name=name,
        prefix=secret[:DISPLAY_PREFIX_CHARS],
        secret_sha256=hash_key(secret),
        created_at=created,
        expires_at=created + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    await key.insert()
    return key, secret


async def list_api_keys(workspace_slug: str) -> list[ApiKey]:
    """The keys of a workspace, oldest first."""
    workspace = await get_workspace(workspace_slug)
    return await ApiKey.find(ApiKey.workspace_id == workspace.workspace_id).sort("+created_at").to_list()


async def revoke_api_key(key_id: str) -> ApiKey:
    """Revoke a key; revoking twice keeps the first revocation time."""
    key = await ApiKey.find_one(ApiKey.key_id == key_id)
    if key is None:
        raise NotFound(f"no API key {key_id!r}")
    if key.revoked_at is None:
        await ApiKey.get_pymongo_collection().update_one(
            {"key_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": clock.now()}}
        )
        key = await ApiKey.find_one(ApiKey.key_id == key_id)
        assert key is not None
    return key


def key_is_usable(key: ApiKey, at: datetime) -> bool:
    """Whether a stored key opens its workspace at the given time."""
    if key.revoked_at is not None:
        return False
    return key.expires_at is None or clock.as_utc(key.expires_at) > at


async def authenticate(secret: str) -> Principal:
    """Resolve a presented key to its workspace, or fail with the same 401 for every kind of bad key."""
    if not secret.startswith(KEY_PREFIX):
        raise Unauthorized("a valid API key is required")
    return await authenticate_hash(hash_key(secret))


async def authenticate_hash(key_hash: str) -> Principal:
    """Resolve a key by its stored hash: what the dashboard's browser session keeps instead of the key itself."""
    at = clock.now()
    key = await ApiKey.find_one(ApiKey.secret_sha256 == key_hash)
    if key is None or not key_is_usable(key, at):
        raise Unauthorized("a valid API key is required")
    if key.last_used_at is None or clock.as_utc(key.last_used_at) < at - LAST_USED_RESOLUTION:
        # At most one write a minute per key: the guard is on the hot path of every request.
        await ApiKey.get_pymongo_collection().update_one(
            {"_id": key.id, "$or": [{"last_used_at": None}, {"last_used_at": {"$lt": at - LAST_USED_RESOLUTION}}]},
            {"$set": {"last_used_at": at}},
        )
    return Principal(workspace_id=key.workspace_id, api_key_id=key.key_id)
