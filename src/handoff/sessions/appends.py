"""Appending to a session's work log and artifacts: one atomic ``$push`` per request, idempotent by id.

The update's filter carries every guard: the workspace, an open status, "no entry with these ids in the open
page yet", "the open page has room" and "room left under the session's byte cap". Its update pushes the
entries, moves the counters and the byte counts, and stamps ``last_active_at`` in the same operation, so
concurrent writers lose nothing and counters are exact.

Exactly once across the whole session: an id may also be in a sealed page, and a seal may move an id out of the
open page (out of the ``$nin``'s sight) at any moment. Two guards close that race, each for one way in:

- The first attempt looks the ids up in the pages' unique entry-id index (only when the session has pages) and
  its filter requires the session's ``pages_version`` to be the one that look-up was made at. Every seal bumps
  it, so no entry can have moved into a page between the look-up and the write. Sessions without pages (version
  0) skip the look-up: the common case stays one round trip. The version each session was last seen at is
  remembered per process (:class:`KnownVersions`); a stale one costs a miss and one read.
- After a miss, one read at snapshot read concern sees the open page and the pages at one point in time, and the
  session's ``appended`` count then. The entries that existed then were all checked; any entry appended since has
  an append number of at least that count, so the retry's filter requires ``sealed_upto`` (a bound on the
  sealed entries' append numbers) not to exceed it: no such entry has been sealed. Seals of older entries do not
  disturb the retry, and a seal only ever takes the older half of a full page, so under many concurrent writers a
  retry is not starved by the seals of others.

An entry's ``blob_id`` must name a blob of the same session (``handoff.blobs``, one indexed read, 422 else).

When the guard matches nothing, one read says why: a retried id with the same content is answered with the
stored entry, other content is a client bug (422), an ended session is 409, a full open page is sealed, a full
session is 409, an old-layout session is migrated, and the append runs again.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import WriteError
from pymongo.read_concern import ReadConcern

from handoff import clock, metrics, quotas
from handoff.blobs import service as blobs
from handoff.blobs.reservation import reclaim_lapsed
from handoff.config import Settings
from handoff.errors import Conflict, FieldError, Invalid
from handoff.sessions import group_commit, log_reads, misses, paging, seals, store, views
from handoff.sessions.lifecycle import Operation, accepted_statuses, is_ended
from handoff.sessions.limits import check_entry, stored_size
from handoff.sessions.models import session_key
from handoff.sessions.paging import Kind, PageBounds

#: MongoDB's codes for "the write is too large": the document would pass 16 MiB (10334, 17419, 17420), or one
#: update's changes do not fit the storage engine's cache (388, TransactionTooLargeForCache). The paged layout keeps
#: a session document far below 16 MiB; this is the second line of defence.
DOCUMENT_TOO_LARGE_CODES = frozenset({10334, 17419, 17420, 388})
#: Attempts at one append: each miss either settles the request (duplicate, 404, 409) or makes progress (a seal,
#: a migration, a newer version seen), so a few suffice even while other writers race.
MAX_ATTEMPTS = 24


class KnownVersions:
    """The ``pages_version`` each recently written session had, so an append knows whether to look at pages.

    Bounded (least recently used sessions are forgotten). Never trusted for correctness: the append's filter
    checks the version, and a wrong guess is a miss that reads the right one.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._versions: OrderedDict[tuple[str, str], int] = OrderedDict()

    def get(self, workspace_id: str, session_id: str) -> int:
        return self._versions.get((workspace_id, session_id), 0)

    def remember(self, workspace_id: str, session_id: str, version: int) -> None:
        key = (workspace_id, session_id)
        if version == 0:
            self._versions.pop(key, None)
            return
        self._versions[key] = version
        self._versions.move_to_end(key)
        if len(self._versions) > self._size:
            self._versions.popitem(last=False)


known_versions = KnownVersions()


@dataclass(slots=True)
class AppendOutcome:
    """What an append stored, and which requested entries were already there (as stored)."""

    appended: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    repeats: int = 0  # entries repeated inside the request itself

    @property
    def duplicate_count(self) -> int:
        """Entries not written because their id was already stored or repeated in the request."""
        return len(self.duplicates) + self.repeats


def new_entry_id() -> str:
    """A generated entry id (matches the client-id pattern)."""
    return uuid.uuid4().hex


def _content(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in entry.items() if name != "timestamp"}


def _dedupe_request(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Drop repeats of one id inside a request (same content); other content under one id is a 422."""
    unique: dict[str, dict[str, Any]] = {}
    repeats = 0
    for entry in entries:
        seen = unique.get(entry["id"])
        if seen is None:
            unique[entry["id"]] = entry
        elif _content(seen) == _content(entry):
            repeats += 1
        else:
            raise _id_reused(entry["id"])
    return list(unique.values()), repeats


def _id_reused(entry_id: str) -> Invalid:
    return Invalid(
        f"id {entry_id!r} is already used by an entry with other content; use a new id",
        errors=[FieldError(field="id", message="already used with other content")],
    )


def update_for(kind: Kind, entries: list[dict[str, Any]], size: int, now: Any) -> dict[str, Any]:
    """The one update that appends ``entries`` (``size`` stored bytes) and moves everything that counts them."""
    increments: dict[str, int] = (
        views.sum_increments(entries) if kind == "work_log" else {"artifact_count": len(entries)}
    )
    stamps: dict[str, Any] = {"last_active_at": now, "updated_at": now}
    if kind == "work_log" and (checkpoint := views.last_checkpoint(entries)) is not None:
        stamps["last_checkpoint"] = checkpoint
    if kind == "artifacts":  # the artifacts rollup takes the change in later (handoff.analytics.rollup)
        stamps["rollup_dirty"] = True
    return {
        "$push": {kind: {"$each": entries}},
        "$inc": {
            **increments,
            "payload_bytes": size,
            f"stored_bytes.{kind}": size,
            f"open_bytes.{kind}": size,
            f"appended.{kind}": len(entries),
        },
        "$set": stamps,
    }


@dataclass(frozen=True, slots=True)
class Checked:
    """What the page check of an append was made against: the session's ``pages_version`` (a look-up of the
    pages alone), or its ``appended`` count (a snapshot read of the open page and the pages together; its
    ``version`` is then only remembered for the next append's first attempt)."""

    version: int | None = None
    appended: int | None = None

    def condition(self, kind: Kind) -> dict[str, Any]:
        if self.appended is not None:
            return {f"sealed_upto.{kind}": {"$not": {"$gt": self.appended}}, **store.PAGED}
        return {"pages_version": self.version or 0}


def guard_for(
    workspace_id: str,
    session_id: str,
    kind: Kind,
    ids: list[str],
    *,
    size: int,
    checked: Checked,
    room: PageBounds,
    settings: Settings,
) -> dict[str, Any]:
    """The filter under which the append may happen (see the module docstring)."""
    guard: dict[str, Any] = {
        # The key as ``_id`` too: group commit's bulks rely on an equality on ``_id`` (see group_commit.py).
        "_id": session_key(workspace_id, session_id),
        **store.key(workspace_id, session_id),
        "status": {"$in": accepted_statuses(Operation.WRITE)},
        **checked.condition(kind),
        f"{kind}.id": {"$nin": ids},
        # Room in the open page: fewer entries than the bound (no element at its last index) and fewer bytes.
        f"{kind}.{room.entries - 1}": {"$exists": False},
        f"open_bytes.{kind}": {"$lt": room.bytes},
    }
    if settings.max_session_bytes:
        guard["payload_bytes"] = {"$lte": settings.max_session_bytes - size}
    return guard


async def append(
    workspace_id: str, session_id: str, *, array: Kind, entries: list[dict[str, Any]], settings: Settings
) -> AppendOutcome:
    """Append entries (each with an ``id``) atomically; see the module docstring for the guarantees."""
    for entry in entries:
        check_entry(entry, settings)
    await blobs.check_blob_refs(workspace_id, session_id, (entry.get("blob_id") for entry in entries))
    pending, repeats = _dedupe_request(entries)
    now = clock.now()
    for entry in pending:
        entry["timestamp"] = now
    outcome = AppendOutcome(repeats=repeats)
    version = known_versions.get(workspace_id, session_id)
    # The session has pages: look the ids up there first. One found is a retry, or an id reused after a clear
    # whose leftover pages are not deleted yet (``purges.py``): the snapshot read of ``_diagnose`` tells them apart,
    # so the guarded write is not tried before it.
    suspected = version > 0 and bool(
        await log_reads.in_sealed_pages(workspace_id, session_id, array, [entry["id"] for entry in pending], first=0)
    )
    checked = Checked(version=version)
    # The first attempt wants room under the page's bounds; a miss there seals the page. Retries accept up to
    # twice the bounds, so that many writers finding one page full all get in while one of them seals it, rather
    # than queueing for the half page each seal frees.
    bounds = misses.page_bounds(settings)
    room = bounds
    sizes = {entry["id"]: stored_size(entry) for entry in pending}  # one encoding per entry, whatever the retries
    if pending:
        await quotas.check_can_write(workspace_id, adds_bytes=sum(sizes.values()), settings=settings)
    for _ in range(MAX_ATTEMPTS):
        if not pending:
            return outcome
        size = sum(sizes[entry["id"]] for entry in pending)
        if settings.max_session_bytes and size > settings.max_session_bytes:
            raise store.full(session_id, settings.max_session_bytes)
        ids = [entry["id"] for entry in pending]
        guard = guard_for(
            workspace_id, session_id, array, ids, size=size, checked=checked, room=room, settings=settings
        )
        matched = False
        try:
            if not suspected:
                matched = await group_commit.committer(_sessions).update(guard, update_for(array, pending, size, now))
        except WriteError as exc:
            if exc.code in DOCUMENT_TOO_LARGE_CODES:
                raise store.full(session_id) from exc
            raise
        suspected = False
        if matched:
            if checked.version is not None:
                known_versions.remember(workspace_id, session_id, checked.version)
            outcome.appended = pending
            metrics.entries_appended(array, len(pending))
            if paging.is_full(2 * len(pending), 2 * size, bounds):
                # A batch of half a page or more may take a page that had room for one entry far past its bounds;
                # seal it now rather than leave every read until the next append to work through the oversized
                # open page. A smaller batch overshoots by less than half a page, which the next append seals.
                await seals.seal_full_page(workspace_id, session_id, array, bounds=bounds)
            return outcome
        checked, pending = await _diagnose(
            workspace_id, session_id, array=array, pending=pending, size=size, settings=settings, outcome=outcome
        )
        room = PageBounds(entries=2 * bounds.entries, bytes=2 * bounds.bytes)
    raise Conflict(f"session {session_id} changed while appending; retry with the same ids")


def _sessions() -> group_commit.Collection:
    """The sessions collection, looked up at each write (not captured once per process)."""
    return store.sessions()


def _settle_stored(
    pending: list[dict[str, Any]], outcome: AppendOutcome, stored_entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Record the requested entries already stored (same content) and return the rest; other content: 422."""
    stored = {entry["id"]: entry for entry in stored_entries}
    for entry in pending:
        if entry["id"] in stored and _content(stored[entry["id"]]) != _content(entry):
            raise _id_reused(entry["id"])
    outcome.duplicates.extend(stored[entry["id"]] for entry in pending if entry["id"] in stored)
    return [entry for entry in pending if entry["id"] not in stored]


async def _diagnose(
    workspace_id: str,
    session_id: str,
    *,
    array: Kind,
    pending: list[dict[str, Any]],
    size: int,
    settings: Settings,
    outcome: AppendOutcome,
) -> tuple[Checked, list[dict[str, Any]]]:
    """One read after a missed append: settle duplicates, seal, migrate or raise; return what the next attempt's
    filter checks and what is left to write.

    The read is one aggregation at snapshot read concern: the requested ids among the open page *and* the pages,
    and the session's ``appended`` count, come from one point in time (see the module docstring).
    """
    ids = [entry["id"] for entry in pending]
    open_page = {"$ifNull": [f"${array}", []]}
    pipeline: list[dict[str, Any]] = [
        {"$match": store.key(workspace_id, session_id)},
        {
            "$project": {
                "_id": 0,
                "status": 1,
                "pages_version": 1,
                "payload_bytes": 1,
                "first_page": {"$ifNull": [f"$pages_from.{array}", 0]},
                f"open_bytes.{array}": 1,
                f"appended.{array}": 1,
                "open_length": {"$size": open_page},
                "stored": {"$filter": {"input": open_page, "cond": {"$in": ["$$this.id", ids]}}},
            }
        },
        {
            "$lookup": {
                "from": store.pages().name,
                "let": {"first": "$first_page"},
                "pipeline": [
                    {"$match": {**store.page_key(workspace_id, session_id, array), "entries.id": {"$in": ids}}},
                    # A clear's leftovers (``purges.py``) are not the log's: their ids may be reused.
                    {"$match": {"$expr": {"$gte": ["$no", "$$first"]}}},
                    {
                        "$project": {
                            "_id": 0,
                            "found": {"$filter": {"input": "$entries", "cond": {"$in": ["$$this.id", ids]}}},
                        }
                    },
                ],
                "as": "in_pages",
            }
        },
    ]
    snapshot = store.sessions().with_options(read_concern=ReadConcern("snapshot"))
    views_found = await (await snapshot.aggregate(pipeline)).to_list(1)
    if not views_found:
        raise store.not_found(session_id)
    view = views_found[0]
    checked = Checked(version=view.get("pages_version"), appended=(view.get("appended") or {}).get(array, 0))
    stored = [*view["stored"], *(entry for page in view["in_pages"] for entry in page["found"])]
    if stored:
        return checked, _settle_stored(pending, outcome, stored)
    if is_ended(view["status"]):
        raise store.ended(session_id, view["status"])
    if "pages_version" not in view:
        await misses.explain_miss(workspace_id, session_id, settings=settings)  # migrates it
        return await _diagnose(
            workspace_id, session_id, array=array, pending=pending, size=size, settings=settings, outcome=outcome
        )
    bounds = misses.page_bounds(settings)
    if paging.is_full(view["open_length"], (view.get("open_bytes") or {}).get(array, 0), bounds):
        await seals.seal_full_page(workspace_id, session_id, array, bounds=bounds)
    elif (
        settings.max_session_bytes
        and view.get("payload_bytes", 0) > settings.max_session_bytes - size
        # Bytes held by uploads whose workers died are no reason to refuse: reclaimed, the append tries again.
        and not await reclaim_lapsed(workspace_id, session_id, settings=settings)
    ):
        raise store.full(session_id, settings.max_session_bytes)
    return checked, pending
