"""Waiting for the service to be ready through the client, as a deployment waits for its probe.

``/readyz`` gives the database ``health.READINESS_TIMEOUT_SECONDS`` and answers 503 when it takes longer, which
it may on a loaded machine (the full suite next to a benchmark: ``ExecutionTimeout``); the clients pass a probe's
503 on as ``Unavailable`` without retrying, by design. Both are right, so a test that means "``ready()`` reaches
the service" waits the 503s out, for ``READY_WITHIN_SECONDS``, rather than take the first as its failure.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from handoff.client import AsyncHandoffClient, HandoffClient, Unavailable

READY_WITHIN_SECONDS = 30.0
POLL_SECONDS = 0.25


async def until_ready(handoff: AsyncHandoffClient) -> dict[str, Any]:
    """``handoff.ready()``'s first answer that is not ``Unavailable`` (its last ``Unavailable`` past the wait)."""
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while True:
        try:
            return await handoff.ready()
        except Unavailable:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(POLL_SECONDS)


def until_ready_blocking(handoff: HandoffClient) -> dict[str, Any]:
    """:func:`until_ready` for the blocking client."""
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while True:
        try:
            return handoff.ready()
        except Unavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(POLL_SECONDS)
