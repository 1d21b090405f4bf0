"""The database layer: one client per process, the document models, and where the server comes from.

The client writes with ``w=majority`` and retryable writes, so an acknowledged write survives the loss of a
primary and a write interrupted by a failover is retried once by the driver. ``serverSelectionTimeoutMS``
is longer than an election, so requests ride one out instead of failing fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener

from handoff.analytics.rollup.models import ArtifactDay, RollupReady
from handoff.blobs.models import BlobChunk, BlobFile
from handoff.claims.models import Claim
from handoff.config import Settings
from handoff.idempotency.models import IdempotencyRecord
from handoff.plans.models import Plan
from handoff.retention.models import Lease
from handoff.sessions.models import LogNotable, LogPage, LogPurge, NewestNotables, Session
from handoff.workspaces.models import ApiKey, Workspace

#: Every collection and its indexes, created at start-up; blobs are GridFS files (``fs.files``, ``fs.chunks``)
#: indexed on ``(metadata.workspace_id, metadata.session_id, metadata.blob_id)`` (``handoff.blobs.models``).
DOCUMENT_MODELS: list[type[Document]] = [
    Workspace,
    ApiKey,
    Session,
    LogPage,
    LogNotable,
    NewestNotables,
    LogPurge,
    Plan,
    IdempotencyRecord,
    Lease,
    BlobFile,
    BlobChunk,
    Claim,
    ArtifactDay,
    RollupReady,
]

MongoDatabase = AsyncDatabase[dict[str, Any]]
MongoClient = AsyncMongoClient[dict[str, Any]]


def create_client(url: str, settings: Settings, *, event_listeners: Sequence[CommandListener] = ()) -> MongoClient:
    """A client with the durability settings the service promises (``event_listeners``: see ``handoff.ops``)."""
    return AsyncMongoClient(
        url,
        event_listeners=event_listeners,
        w="majority",
        retryWrites=True,
        retryReads=True,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
        appname="handoff",
    )


async def init_database(client: MongoClient, database_name: str) -> MongoDatabase:
    """Bind the documents to a database and create their indexes (idempotent)."""
    database = client[database_name]
    await init_beanie(database=database, document_models=DOCUMENT_MODELS)
    return database


@contextmanager
def mongodb_url(settings: Settings) -> Iterator[str]:
    """The configured server's URL, or the bundled one, started (or found running) for as long as needed."""
    if settings.mongodb_url:
        yield settings.mongodb_url
        return
    from handoff.localdb import local_mongodb  # noqa: PLC0415 - only the embedded default needs it

    with local_mongodb(settings.data_dir) as server:
        yield server.url


@asynccontextmanager
async def open_database(settings: Settings, *, url: str | None = None) -> AsyncIterator[MongoDatabase]:
    """Connect and initialise for the length of a command; the client is closed on the way out."""
    if url is None:
        with mongodb_url(settings) as resolved:
            async with open_database(settings, url=resolved) as database:
                yield database
        return
    client = create_client(url, settings)
    try:
        yield await init_database(client, settings.database)
    finally:
        await client.close()
