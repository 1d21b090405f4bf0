"""A database reached through a client with a command listener of the test's own, for tests that check what the
service sends to MongoDB (which filters, how many commands)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from handoff.db import MongoDatabase, init_database


class StartedCommands(monitoring.CommandListener):
    """A listener that only looks at commands as they start (subclasses implement :meth:`started`)."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        raise NotImplementedError

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@asynccontextmanager
async def listened_database(
    url: str, listener: monitoring.CommandListener, prefix: str
) -> AsyncIterator[MongoDatabase]:
    """A fresh database with the service's indexes, dropped afterwards, every command of it seen by ``listener``."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True, event_listeners=[listener])
    name = f"{prefix}_{secrets.token_hex(3)}"
    try:
        yield await init_database(client, name)
        await client.drop_database(name)
    finally:
        await client.close()
