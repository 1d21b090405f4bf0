"""Typed Python clients of the handoff REST API: ``HandoffClient`` (blocking) and ``AsyncHandoffClient``.

::

    from handoff.client import HandoffClient

    with HandoffClient() as handoff:  # HANDOFF_URL, HANDOFF_API_KEY
        session = handoff.create_session(agent_type="coder", context_summary={"goal": "fix login"})
        handoff.log_work(session.session_id, "Reproduced the bug", type="checkpoint")
        handoff.handoff(session.session_id, "Root cause found", next_steps=["write the fix"])

Methods return the service's own pydantic schemas; problem details come back as the exceptions below. Both
clients share one request builder and one retry policy (``handoff.client._core``), and the blocking one is
generated from the async one (``handoff.client._async`` says how to add a method).
"""

from handoff.client._async import AsyncHandoffClient
from handoff.client._core import RetryPolicy
from handoff.client._events import Event
from handoff.client._sync import HandoffClient
from handoff.client.config import ClientConfig, load_client_config
from handoff.client.errors import (
    Conflict,
    FieldProblem,
    Gone,
    HandoffClientError,
    Invalid,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "AsyncHandoffClient",
    "ClientConfig",
    "Conflict",
    "Event",
    "FieldProblem",
    "Gone",
    "HandoffClient",
    "HandoffClientError",
    "Invalid",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "load_client_config",
]
