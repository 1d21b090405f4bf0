"""The command listeners the service's MongoDB client carries: failed commands counted, and (with tracing) spans.

PyMongo reports every command it sends to its ``CommandListener``\\ s; :class:`CommandFailureCounter` counts
the failed ones by command and kind (the server's ``codeName``, such as ``NotWritablePrimary``, or for a
network failure the driver's error class, such as ``NetworkTimeout``): both closed sets. Errors that end a
request before any command is sent (no primary to select) are counted by the error handler instead
(``handoff_mongodb_errors_total``).

The listeners are given to the one client the app's lifespan creates (:func:`handoff.db.create_client`), not
registered process-wide, so a CLI command or a test's own client stays unobserved unless it asks.
"""

from __future__ import annotations

from pymongo import monitoring

from handoff import metrics


class CommandFailureCounter(monitoring.CommandListener):
    """Count failed commands in ``handoff_mongodb_command_failures_total``; nothing on the success path."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        failure = event.failure
        kind = failure.get("codeName") or failure.get("errtype") or f"code {failure.get('code', '?')}"
        metrics.mongodb_command_failed(event.command_name, str(kind))
