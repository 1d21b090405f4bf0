"""The stored documents of a session: the session itself, and the sealed pages of its work log and artifacts.

A session is one document whose ``work_log`` and ``artifacts`` arrays hold its *open pages*, the newest entries;
appends ``$push`` onto them in one guarded update that also moves the counters, ``last_checkpoint``, the byte
counts and ``last_active_at``, so those are always exact. When an open page passes its bound, its oldest entries
move into a :class:`LogPage` (a *seal*, ``seals.py``), so a session has no length limit and an append costs the
same at the millionth entry as at the tenth. ``paging.py`` has the arithmetic; read paths never load an array
whole.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import pymongo
from beanie import Document
from pydantic import Field
from pymongo import IndexModel

from handoff import clock

#: The kinds of entry a session keeps, each in an array of the session document and in pages (``paging.Kind``).
ENTRY_KINDS = ("work_log", "artifacts")


class SessionStatus(StrEnum):
    """Where a session is in its life; ``completed`` and ``failed`` are ended."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


ENDED_STATUSES = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED})


class EntryType(StrEnum):
    """The kinds of typed work-log entry."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    SUCCESS = "success"
    CHECKPOINT = "checkpoint"
    DECISION = "decision"


class ArtifactAction(StrEnum):
    """What an agent did to a file."""

    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"


#: The filters each kind's pages are listed by (``paging.FILTERS`` reads them from here): ``all``, the entry
#: types of the work log, the actions of artifacts and ``blob`` (artifacts with content).
PAGE_FILTERS: dict[str, tuple[str, ...]] = {
    "work_log": ("all", *(entry_type.value for entry_type in EntryType)),
    "artifacts": ("all", *(action.value for action in ArtifactAction), "blob"),
}


def _listing_index(name: str, *keys: str) -> IndexModel:
    """An index for one listing filter, ordered newest first with ``session_id`` as the keyset tiebreak."""
    fields = [("workspace_id", pymongo.ASCENDING)]
    fields += [(key, pymongo.ASCENDING) for key in keys]
    fields += [("started_at", pymongo.DESCENDING), ("session_id", pymongo.DESCENDING)]
    return IndexModel(fields, name=name)


def session_key(workspace_id: str, session_id: str) -> str:
    """A session document's ``_id``: its workspace and id, so a change event names the workspace it belongs to."""
    return f"{workspace_id}/{session_id}"


#: The partial index of the sessions the artifacts rollup has not taken in yet.
ROLLUP_DIRTY_INDEX = "artifacts_rollup_dirty"
#: The partial index of the sessions with an upload in progress (a blob reservation), for its lapse.
UPLOADS_IN_PROGRESS_INDEX = "uploads_in_progress"


class Session(Document):
    """One agent session: its fields, counters and the open pages of its work log and artifacts."""

    #: ``<workspace_id>/<session_id>`` (:func:`session_key`); sessions stored before it was have an ObjectId until
    #: they are migrated (``seals.migrate``).
    id: str | None = None  # type: ignore[assignment]
    workspace_id: str
    session_id: str
    external_id: str | None = None
    agent_api_key_id: str | None = None
    plan: str | None = None
    agent_type: str | None = None
    status: SessionStatus = SessionStatus.ACTIVE
    context_summary: dict[str, Any] | None = None
    work_log: list[dict[str, Any]] = Field(default_factory=list)
    artifacts: list[dict[str, Any]] = Field(default_factory=list)
    handoff_notes: dict[str, Any] | None = None
    final_summary: str | None = None
    action_count: int = 0
    artifact_count: int = 0
    checkpoint_count: int = 0
    error_count: int = 0
    last_checkpoint: dict[str, Any] | None = None
    #: Bumped by every seal and by every removal of a sealed entry; an append's filter carries the value it
    #: checked the pages at, so no seal can move an id out of its sight between that check and the write. Its
    #: presence marks the paged layout: a session stored before has none until it is migrated.
    pages_version: int = 0
    #: Per kind: how many entries were ever appended (an entry's *append number* is this count before it), and an
    #: upper bound on the append numbers of the sealed entries (every sealed entry's number is below it). An append
    #: retried after a consistent read of the session requires ``sealed_upto <= appended`` as read: no entry
    #: appended since that read has been sealed out of its ``$nin``'s sight (``appends.py``).
    appended: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(ENTRY_KINDS, 0))
    sealed_upto: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(ENTRY_KINDS, 0))
    #: Per notable entry type (``NOTABLE_TYPES``): how many of the sealed pages' entries of that type have their
    #: :class:`LogNotable`, moved with them by every seal and removal. The sealed entries of a type without one
    #: (``sealed`` less this) are the oldest: pages sealed before notable documents existed.
    noted: dict[str, int] = Field(default_factory=dict)
    #: Per kind, the lowest page number still part of the log (absent: 0). A clear (``purges.py``) raises it to
    #: its ``pages_version``, so every read looks past the pages it left behind while they are deleted in batches;
    #: a session re-created with the id of one deleted starts above what the deleted one left.
    pages_from: dict[str, int] = Field(default_factory=dict)
    #: Bytes of the entries in each open page, against the page's byte bound.
    open_bytes: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(ENTRY_KINDS, 0))
    #: Per kind, per filter (``paging.FILTERS``): how many entries the sealed pages hold.
    sealed: dict[str, dict[str, int]] = Field(
        default_factory=lambda: {kind: dict.fromkeys(names, 0) for kind, names in PAGE_FILTERS.items()}
    )
    #: Stored bytes by kind (``work_log``, ``artifacts``, ``blobs``); ``payload_bytes`` is their sum, the figure
    #: the write filters keep under ``HANDOFF_MAX_SESSION_BYTES``.
    stored_bytes: dict[str, int] = Field(default_factory=lambda: dict.fromkeys((*ENTRY_KINDS, "blobs"), 0))
    payload_bytes: int = 0
    #: The uploads in progress (``handoff.blobs.reservation``), by reservation id: ``{bytes, renewed_at, file_id}``,
    #: the bytes each holds in ``payload_bytes`` and ``stored_bytes.blobs``, when it last gave word, and its GridFS
    #: file.
    blob_reservations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: What the last removal took (``{kind, ids, at}``), written by the removing update so a change stream sees it.
    last_removal: dict[str, Any] | None = None
    #: A handoff's claim (``handoff.claims``): the claim that holds it (``{claim_id, session_id, agent_type,
    #: claimed_at, lease_seconds, lease_expires_at}`` as first granted, ``completed_at`` once its replay
    #: completed), set and cleared in the claims' own transactions; and the claim that last let go of it, written
    #: by the update that lets go, so a change stream sees what ended (the way ``last_removal`` works). Neither
    #: moves ``updated_at``: the Session body is unchanged.
    claim: dict[str, Any] | None = None
    last_claim: dict[str, Any] | None = None
    #: The artifacts rollup (``handoff.analytics.rollup``): set by every change of the artifacts in that change's
    #: own update, cleared by the pass that folds the change into the day documents; and what those documents
    #: hold for this session, per path (``{path, touches, created, modified, deleted}``). A session stored before
    #: the rollup has neither field; the first pass (or ``handoff migrate``) marks it dirty if it holds artifacts. A
    #: new document is dirty too, whatever it holds (so no way of inserting one can skip the rollup); the pass
    #: folds it once.
    rollup_dirty: bool = True
    rollup_snapshot: list[dict[str, Any]] = Field(default_factory=list)
    replayed_from: str | None = None
    duration_minutes: int | None = None
    legacy: dict[str, Any] | None = None
    started_at: datetime = Field(default_factory=clock.now)
    last_active_at: datetime = Field(default_factory=clock.now)
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    created_at: datetime = Field(default_factory=clock.now)
    updated_at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "sessions"
        use_state_management = False
        validate_on_save = True
        indexes = [
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("session_id", pymongo.ASCENDING)],
                name="workspace_session_unique",
                unique=True,
            ),
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("external_id", pymongo.ASCENDING)],
                name="workspace_external_id_unique",
                unique=True,
                partialFilterExpression={"external_id": {"$type": "string"}},
            ),
            _listing_index("listing"),
            _listing_index("listing_by_status", "status"),
            _listing_index("listing_by_agent_type", "agent_type"),
            _listing_index("listing_by_plan", "plan"),
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("replayed_from", pymongo.ASCENDING)],
                name="lineage",
            ),
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("status", pymongo.ASCENDING),
                    ("last_active_at", pymongo.ASCENDING),
                ],
                name="idle_by_status",
            ),
            # Retention (handoff.retention): a workspace's ended sessions by when they ended, oldest first.
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("status", pymongo.ASCENDING),
                    ("ended_at", pymongo.ASCENDING),
                ],
                name="ended_by_status",
            ),
            # Quotas (handoff.quotas): a workspace's stored bytes summed from the index alone (covered).
            IndexModel([("workspace_id", pymongo.ASCENDING), ("payload_bytes", pymongo.ASCENDING)], name="usage"),
            # Analytics (handoff.analytics.pipelines): summary, agents and activity are answered from this index
            # alone (covered), artifacts filters on its last key before fetching.
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("started_at", pymongo.ASCENDING),
                    ("status", pymongo.ASCENDING),
                    ("agent_type", pymongo.ASCENDING),
                    ("duration_minutes", pymongo.ASCENDING),
                    ("ended_at", pymongo.ASCENDING),
                    ("action_count", pymongo.ASCENDING),
                    ("error_count", pymongo.ASCENDING),
                    ("checkpoint_count", pymongo.ASCENDING),
                    ("artifact_count", pymongo.ASCENDING),
                ],
                name="analytics_rollup",
            ),
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("last_active_at", pymongo.DESCENDING),
                    ("started_at", pymongo.ASCENDING),
                ],
                name="analytics_with_errors",
                partialFilterExpression={"error_count": {"$gt": 0}},
            ),
            # Waiting handoffs (handoff.claims.waiting): the unclaimed ones in paused_at order (claim.* null), apart
            # from those an open claim still marks (claim.claim_id set) and those a claim completed (never scanned).
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("claim.completed_at", pymongo.ASCENDING),
                    ("claim.claim_id", pymongo.ASCENDING),
                    ("paused_at", pymongo.ASCENDING),
                    ("session_id", pymongo.ASCENDING),
                ],
                name="waiting_handoffs",
                partialFilterExpression={"status": SessionStatus.PAUSED.value, "handoff_notes": {"$type": "object"}},
            ),
            # The artifacts rollup (handoff.analytics.rollup): the sessions whose artifacts changed since the pass
            # last took them in, by start, for the pass's batches and the route's live correction of a window.
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("started_at", pymongo.ASCENDING)],
                name=ROLLUP_DIRTY_INDEX,
                partialFilterExpression={"rollup_dirty": True},
            ),
            # Uploads in progress (handoff.blobs.reservation.reclaim_everywhere): only the sessions whose
            # ``blob_reservations`` is a non-empty object, so the retention pass finds a dead upload's in a few keys.
            # Keyed by the reservations themselves: Beanie takes an index of the unique index's fields for that one
            # and leaves the unique index out.
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("blob_reservations", pymongo.ASCENDING)],
                name=UPLOADS_IN_PROGRESS_INDEX,
                partialFilterExpression={"blob_reservations": {"$gt": {}}},
            ),
        ]


def filter_index_name(kind: str, name: str) -> str:
    """The name of the index of pages by one filter (reads pass it as their ``hint``). Filters are named apart
    across kinds except ``all``, whose one index serves both (the kind is part of its key)."""
    del kind
    return f"pages_{name}"


#: The index of pages by entry id (unique within a session's kind), the one of pages in log order, and the one
#: analytics windows read (a workspace's pages of one kind by their session's start).
ENTRY_ID_INDEX = "page_entry_ids"
PAGE_ORDER_INDEX = "page_order"
PAGES_BY_START_INDEX = "pages_by_start"


def _filter_index(name: str) -> IndexModel:
    """Pages holding entries of one filter, by how many such entries precede them.

    Partial (only pages with such entries), so the last page whose ``before`` is at most ``k`` is the one holding
    the filter's entry ``k``: one seek, at any length of log.
    """
    return IndexModel(
        [
            ("workspace_id", pymongo.ASCENDING),
            ("session_id", pymongo.ASCENDING),
            ("kind", pymongo.ASCENDING),
            (f"before.{name}", pymongo.ASCENDING),
        ],
        name=filter_index_name("", name),
        partialFilterExpression={f"counts.{name}": {"$gt": 0}},
    )


class LogPage(Document):
    """A sealed page: a run of a session's oldest work-log entries or artifacts, in recorded order.

    Written once by a seal (in the same transaction that takes the entries off the session's open page), changed
    afterwards only by the removal of one of its entries. Shards with its session on
    ``{workspace_id, session_id}``.
    """

    workspace_id: str
    session_id: str
    kind: str
    #: The session's ``pages_version`` when the page was sealed: increasing, so pages sort in log order.
    no: int
    #: Per filter, how many of the kind's entries come before this page, and how many it holds.
    before: dict[str, int]
    counts: dict[str, int]
    stored_bytes: int
    #: The session's start, so analytics windows on ``started_at`` read pages without a lookup.
    started_at: datetime
    entries: list[dict[str, Any]]
    sealed_at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "log_pages"
        use_state_management = False
        validate_on_save = False
        indexes = [
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("session_id", pymongo.ASCENDING),
                    ("kind", pymongo.ASCENDING),
                    ("no", pymongo.ASCENDING),
                ],
                name=PAGE_ORDER_INDEX,
                unique=True,
            ),
            # Entry ids are unique within a session's kind across all its pages; the open page's own guard
            # (``$nin`` in the append filter) covers the session document.
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("session_id", pymongo.ASCENDING),
                    ("kind", pymongo.ASCENDING),
                    ("entries.id", pymongo.ASCENDING),
                ],
                name=ENTRY_ID_INDEX,
                unique=True,
            ),
            *(_filter_index(name) for name in dict.fromkeys(name for names in PAGE_FILTERS.values() for name in names)),
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("kind", pymongo.ASCENDING),
                    ("started_at", pymongo.ASCENDING),
                ],
                name=PAGES_BY_START_INDEX,
            ),
        ]


#: The work-log entry types a context lists from the whole log (checkpoints, decisions, errors): a sealed entry of
#: one of them is also stored as a :class:`LogNotable`.
NOTABLE_TYPES: tuple[str, ...] = (EntryType.CHECKPOINT.value, EntryType.DECISION.value, EntryType.ERROR.value)

#: How many entries each list of the handoff and replay contexts holds at most (the newest, in recorded order).
CONTEXT_LIST_LIMIT = 200

#: The index of notable entries of one type in log order.
NOTABLE_ORDER_INDEX = "notable_order"


class LogNotable(Document):
    """A sealed work-log entry of a notable type, again, alone: what the contexts' lists read (``notables.py``).

    Written with its page (in the seal's transaction, or by the import or migration that writes the page) and
    removed with its entry, in the same transaction. Shards with its session on ``{workspace_id, session_id}``.
    """

    #: ``<workspace_id>/<session_id>/<entry id>`` (entry ids are unique within a session's pages), so removing
    #: an entry's copy is one read of the ``_id`` index.
    id: str  # type: ignore[assignment]
    workspace_id: str
    session_id: str
    type: str
    #: Where the entry is in the log: its page's ``no`` and its index in that page when sealed. Removals only
    #: ever take entries out, so the pair keeps the log's order.
    no: int
    at: int
    entry: dict[str, Any]
    #: The page's ``sealed_at`` (an import run takes back what it wrote by it).
    sealed_at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "log_notables"
        use_state_management = False
        validate_on_save = False
        indexes = [
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("session_id", pymongo.ASCENDING),
                    ("type", pymongo.ASCENDING),
                    ("no", pymongo.ASCENDING),
                    ("at", pymongo.ASCENDING),
                ],
                name=NOTABLE_ORDER_INDEX,
            ),
        ]


class NewestNotables(Document):
    """The newest checkpoints, decisions and errors of a session's sealed pages, as the replay context answers
    them, in one document per session (``newest_notables.py``): what the context reads in one ``_id`` lookup.

    A copy of the newest :class:`LogNotable` documents of each type, kept by the writes that change them (a seal,
    a removal, a clear, an erasure, a migration) and valid only while its ``version`` is the session's
    ``pages_version``: a reader that finds another falls back to the notable documents. Shards with its session
    on ``{workspace_id, session_id}``.
    """

    #: :func:`session_key` of its session.
    id: str  # type: ignore[assignment]
    workspace_id: str
    session_id: str
    #: The session's ``pages_version`` these lists agree with.
    version: int
    #: The form of the entries (``newest_notables.SHAPE``): a reader of another form reads the notable documents.
    shape: int
    #: Per notable type, its newest sealed entries (at most ``newest_notables.LENGTH``), oldest first, each as the
    #: JSON text the answer writes (``None``: too large to copy, ``newest_notables.MAX_TEXT_BYTES``).
    lists: dict[str, list[bytes | None]]
    #: The same entries' ids, which a removal looks for (the reader leaves them out).
    ids: dict[str, list[str]]

    class Settings:
        name = "log_newest_notables"
        use_state_management = False
        validate_on_save = False


class LogPurge(Document):
    """The pages and notable documents a clear or an erasure left to delete: one per session key (``purges.py``).

    Written in the same small transaction as the clear's or the erasure's change of the session document, and
    removed once what it names is gone, so a process that dies midway leaves it for the next clear, erasure or
    background pass to finish. ``below``: per kind, every page numbered below it (and, for ``work_log``, every
    notable document of such a page) is a leftover.
    """

    #: :func:`session_key` of the session the leftovers belonged to.
    id: str  # type: ignore[assignment]
    workspace_id: str
    session_id: str
    below: dict[str, int]
    at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "log_purges"
        use_state_management = False
        validate_on_save = False
        #: The reads across a workspace's pages exclude its leftovers (``purges.hidden``).
        indexes = [IndexModel([("workspace_id", pymongo.ASCENDING)], name="purges_workspace")]
