"""``handoff tail``: a workspace's (or one session's) events as they happen, one line each, read from MongoDB.

Like ``handoff stats`` and ``handoff export``, it needs no running service and no key: it opens the database
itself and follows the same :class:`~handoff.events.hub.Hub` the REST routes stream from
(:func:`handoff.events.follow.follow`, which resumes by itself when it falls behind). ``--json`` writes each
event as one JSON object a line (its ``id`` is a resume token the REST routes accept as ``Last-Event-ID``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import pydantic_core
from rich.console import Console
from rich.markup import escape

from handoff.config import Settings
from handoff.errors import Invalid
from handoff.events.follow import follow
from handoff.events.hub import Delivery, Hub, Selection
from handoff.workspaces import service as workspaces

#: The style of each event type's name in the rich line.
STYLES = {"session": "bold cyan", "work_log": "green", "artifact": "magenta", "handoff": "bold yellow"}


async def workspace_id_of(slug: str | None) -> str:
    """The workspace to follow: the one named, else the only one there is."""
    if slug is not None:
        return (await workspaces.get_workspace(slug)).workspace_id
    found = await workspaces.list_workspaces()
    if len(found) != 1:
        names = ", ".join(w.slug for w in found) or "none yet"
        raise Invalid(f"say which workspace to follow with --workspace (there are: {names})")
    return found[0].workspace_id


def summary(data: dict[str, Any]) -> str:  # noqa: PLR0911 - one return per shape of event
    """The few words of an event worth a glance: the entry, the artifact, what changed."""
    if entry := data.get("entry"):
        text = entry.get("action") or entry.get("message") or ""
        kind = entry.get("type")
        return f"[{kind}] {text}" if kind else str(text)
    if artifact := data.get("artifact"):
        return f"{artifact.get('action', '')} {artifact.get('path', '')}".strip()
    if session := data.get("session"):
        return f"agent {session.get('agent_type') or '-'}"
    if notes := data.get("handoff_notes"):
        return str(notes.get("summary", ""))
    if changes := data.get("changes"):
        return ", ".join(f"{name}={value}" for name, value in changes.items() if not isinstance(value, dict))
    if ids := data.get("ids"):
        return f"{len(ids)} removed"
    return "cleared" if data.get("cleared") else ""


def line(delivery: Delivery) -> str:
    """One rich line: time, type, session, summary."""
    data = delivery.event.data
    style = STYLES.get(delivery.event.type.partition(".")[0], "white")
    at = str(data.get("at", ""))[11:19]
    return (
        f"[dim]{at}[/dim] [{style}]{delivery.event.type:<18}[/{style}] {escape(delivery.event.session_id)}"
        f"  {escape(summary(data))}"
    )


def as_json(delivery: Delivery) -> str:
    """One JSON object: the event's ``data`` with its resume token as ``id``."""
    return pydantic_core.to_json({"id": delivery.position.encode(), **delivery.event.data}).decode()


async def tail(
    settings: Settings,
    *,
    workspace_slug: str | None,
    session_id: str | None,
    types: Collection[str] | None,
    write: Callable[[Delivery], None],
    max_events: int | None = None,
) -> None:
    """Follow the events, handing each to ``write``, until ``max_events`` (or the caller's Ctrl-C)."""
    workspace_id = await workspace_id_of(workspace_slug)
    if session_id is not None:
        from handoff.sessions import service  # noqa: PLC0415 - only to check the session exists

        await service.get_session(workspace_id, session_id)
    hub = Hub(queue_size=settings.events_queue_size, max_streams_per_key=1)
    selection = Selection(workspace_id, session_id, frozenset(types) if types else None)
    seen = 0
    try:
        async for delivery in follow(hub, selection):
            write(delivery)
            seen += 1
            if max_events is not None and seen >= max_events:
                return
    finally:
        await hub.close()


def printer(console: Console, *, json_lines: bool) -> Callable[[Delivery], None]:
    """How each event is written: a rich line, or (``--json``) a plain JSON line, flushed at once."""
    if json_lines:
        return lambda delivery: print(as_json(delivery), flush=True)  # noqa: T201 - machine output, no markup
    return lambda delivery: console.print(line(delivery), highlight=False, soft_wrap=True)
