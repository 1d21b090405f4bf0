"""Per-workspace quotas: the bytes a workspace stores and the sessions it holds.

``HANDOFF_WORKSPACE_MAX_BYTES`` bounds the sum of its sessions' ``payload_bytes`` (every entry, artifact and blob
stored); ``HANDOFF_WORKSPACE_MAX_SESSIONS`` bounds how many sessions it has. Both are off by default (0). A write
that would pass one is refused with a ``409`` whose detail names the setting.

No workspace counter is kept: an append is one atomic update of its session document and stays one. The usage
is computed by one aggregation over the workspace's sessions (``$match`` on ``workspace_id``, ``$group`` summing
``payload_bytes``), answered from the index ``usage`` on the session document alone (covered: no session, with
its open page of entries, is read), and cached by each worker for ``HANDOFF_WORKSPACE_USAGE_CACHE_SECONDS`` (5 s
by default); what the worker admits meanwhile is added to its cached figure at once. So a workspace passes a
quota by at most what the *other* workers admit within one cache period, and deletions are seen within one period
too. With the cache at 0 every check reads the usage (exact for one worker, still racy between concurrent writers).

The session code calls :func:`check_can_write` before a write that adds bytes and :func:`check_can_create` before
a session is inserted; both return at once when their quotas are off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handoff.cache import TtlCache
from handoff.config import Settings
from handoff.errors import QuotaExceeded
from handoff.sessions.models import Session


@dataclass(slots=True)
class WorkspaceUsage:
    """What a workspace holds: the sum of its sessions' ``payload_bytes``, and how many sessions."""

    stored_bytes: int = 0
    sessions: int = 0


def usage_pipeline(workspace_id: str) -> list[dict[str, Any]]:
    """The aggregation of a workspace's usage (covered by the index ``usage``, see the module)."""
    return [
        {"$match": {"workspace_id": workspace_id}},
        {"$group": {"_id": None, "stored_bytes": {"$sum": "$payload_bytes"}, "sessions": {"$sum": 1}}},
    ]


async def workspace_usage(workspace_id: str) -> WorkspaceUsage:
    """The workspace's usage as stored now (no cache)."""
    cursor = await Session.get_pymongo_collection().aggregate(usage_pipeline(workspace_id))
    rows = await cursor.to_list(1)
    if not rows:
        return WorkspaceUsage()
    return WorkspaceUsage(stored_bytes=int(rows[0]["stored_bytes"]), sessions=int(rows[0]["sessions"]))


#: One cache per configured lifetime, for this process (apps with different settings may share one process).
_caches: dict[float, TtlCache[str, WorkspaceUsage]] = {}


async def _cached_usage(workspace_id: str, settings: Settings) -> WorkspaceUsage:
    ttl = settings.workspace_usage_cache_seconds
    cache = _caches.get(ttl)
    if cache is None:
        cache = _caches[ttl] = TtlCache(ttl)
    return await cache.resolve(workspace_id, lambda: workspace_usage(workspace_id))


def _quotas_off(settings: Settings) -> bool:
    return settings.workspace_max_bytes <= 0 and settings.workspace_max_sessions <= 0


def _check_bytes(workspace_id: str, usage: WorkspaceUsage, adds_bytes: int, settings: Settings) -> None:
    limit = settings.workspace_max_bytes
    if limit > 0 and usage.stored_bytes + adds_bytes > limit:
        raise QuotaExceeded(
            f"workspace {workspace_id} is at its quota HANDOFF_WORKSPACE_MAX_BYTES: it stores "
            f"{usage.stored_bytes:,} of {limit:,} bytes and this write adds {adds_bytes:,}; "
            "delete sessions, or ask the operator to raise the quota"
        )


async def check_can_write(workspace_id: str, *, adds_bytes: int, settings: Settings) -> None:
    """Refuse (409, :class:`QuotaExceeded`) a write that would take the workspace past its byte quota.

    Call it once per write, just before the update, with the bytes the write adds to ``payload_bytes``: an
    admitted write is counted in this worker's figure at once (a write that then stores nothing, a duplicate,
    is counted until the next refresh, which errs on the safe side).
    """
    if settings.workspace_max_bytes <= 0:
        return
    usage = await _cached_usage(workspace_id, settings)
    _check_bytes(workspace_id, usage, adds_bytes, settings)
    usage.stored_bytes += adds_bytes


async def check_can_create(workspace_id: str, *, adds_bytes: int = 0, settings: Settings) -> None:
    """Refuse (409, :class:`QuotaExceeded`) a new session past the session quota, or one whose first entries
    (a replay's seed: ``adds_bytes``) would pass the byte quota. Call it just before inserting a session."""
    if _quotas_off(settings):
        return
    usage = await _cached_usage(workspace_id, settings)
    limit = settings.workspace_max_sessions
    if limit > 0 and usage.sessions + 1 > limit:
        raise QuotaExceeded(
            f"workspace {workspace_id} is at its quota HANDOFF_WORKSPACE_MAX_SESSIONS: it holds "
            f"{usage.sessions:,} of {limit:,} sessions; delete or prune ended sessions, or ask the operator to "
            "raise the quota"
        )
    _check_bytes(workspace_id, usage, adds_bytes, settings)
    usage.sessions += 1
    usage.stored_bytes += adds_bytes
