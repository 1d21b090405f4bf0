"""What the dashboard's pages show, derived from the domain's answers: pure functions, no database, no clock.

The pages never compute a figure the API does not: these functions only choose how a stored thing looks
(an entry's icon, label and style; a page of the log; the buttons a status allows), so they are tested on
their own and the templates stay free of rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from handoff import clock
from handoff.sessions.lifecycle import Operation, accepted_statuses
from handoff.sessions.models import ArtifactAction, EntryType, SessionStatus
from handoff.sessions.schemas import ActionEntry, Artifact, SessionRead, WorkLogEntry

#: Entries per page of the timeline, and sessions per page of the list.
LOG_PAGE_SIZE = 50
SESSIONS_PAGE_SIZE = 50
#: How many artifacts of each action the session page lists (the count says how many there are in all).
ARTIFACTS_PER_ACTION = 100


@dataclass(frozen=True, slots=True)
class Kind:
    """How one kind of work-log entry looks: an icon and a word (never colour alone), and its style."""

    name: str
    label: str
    icon: str
    notable: bool = False


ACTION_KIND = Kind("action", "Action", "action")
KINDS: dict[str, Kind] = {
    EntryType.INFO: Kind("info", "Info", "info"),
    EntryType.WARNING: Kind("warning", "Warning", "warning"),
    EntryType.ERROR: Kind("error", "Error", "error", notable=True),
    EntryType.SUCCESS: Kind("success", "Success", "success"),
    EntryType.CHECKPOINT: Kind("checkpoint", "Checkpoint", "checkpoint", notable=True),
    EntryType.DECISION: Kind("decision", "Decision", "decision", notable=True),
}

STATUS_ICONS = {
    SessionStatus.ACTIVE: "active",
    SessionStatus.PAUSED: "paused",
    SessionStatus.COMPLETED: "success",
    SessionStatus.FAILED: "error",
}


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One entry of the timeline."""

    id: str
    kind: Kind
    text: str
    timestamp: datetime
    data: dict[str, Any] | None


def timeline_item(entry: WorkLogEntry) -> TimelineItem:
    """An action entry shows its action and ``details``; a typed entry its message, type and ``data``."""
    if isinstance(entry, ActionEntry):
        return TimelineItem(entry.id, ACTION_KIND, entry.action, entry.timestamp, entry.details or None)
    return TimelineItem(entry.id, KINDS[entry.type], entry.message, entry.timestamp, entry.data or None)


@dataclass(frozen=True, slots=True)
class Pager:
    """Page ``page`` (from 1) of ``total`` items, ``size`` a page."""

    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def first_shown(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last_shown(self) -> int:
        return min(self.total, self.offset + self.size)

    @property
    def previous(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None


def page_number(value: str | None) -> int:
    """A page asked for in the query string: a positive integer, anything else the first page."""
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


@dataclass(frozen=True, slots=True)
class ArtifactGroup:
    """The artifacts of one action shown on the session page: the first of them and how many there are."""

    action: ArtifactAction
    artifacts: list[Artifact]
    total: int


def artifact_groups(pages: Iterable[tuple[ArtifactAction, tuple[list[Artifact], int]]]) -> list[ArtifactGroup]:
    """One group per action from its first page of artifacts (created, modified, deleted); empty ones left out."""
    return [ArtifactGroup(action, items, total) for action, (items, total) in pages if total]


@dataclass(frozen=True, slots=True)
class Button:
    """A lifecycle button of the session page, and the question its confirmation asks."""

    operation: str
    label: str
    question: str
    field: str | None = None  # the optional text sent with it (the summary of complete, the reason of fail)


def lifecycle_buttons(status: SessionStatus) -> list[Button]:
    """The transitions that would change this session: pause an active one, resume a paused one, end an open one."""
    if status.value not in accepted_statuses(Operation.END):
        return []
    buttons = []
    if status is SessionStatus.ACTIVE:
        buttons.append(Button("pause", "Pause", "Pause this session? Agents can resume it later."))
    if status is SessionStatus.PAUSED:
        buttons.append(Button("resume", "Resume", "Make this session active again?"))
    buttons.append(
        Button("complete", "Complete", "End this session as completed? It accepts nothing after.", "summary")
    )
    buttons.append(Button("fail", "Fail", "End this session as failed? It accepts nothing after.", "reason"))
    return buttons


def live_edge(pager: Pager, order: str) -> bool:
    """Whether the page shows the newest entries (the first page newest first, the last oldest first): only there
    does the live tail insert new entries, so an older page keeps the entries its pager says it has."""
    return pager.page == 1 if order == "desc" else pager.page == pager.pages


def session_matches(session: SessionRead, filters: Mapping[str, str | None]) -> bool:
    """Whether a session passes the Sessions page's filters, as ``sessions.service.list_sessions`` applies them
    (each given filter an exact match): a live row that stops matching leaves the table."""
    values = {
        "status": session.status.value,
        "agent_type": session.agent_type,
        "plan": session.plan,
        "external_id": session.external_id,
    }
    return all(value is None or values[name] == value for name, value in filters.items())


# Formatting (registered as template filters) ------------------------------------------------------------------


def when(value: datetime | None) -> str:
    """A time as people read it in a table: ``2026-12-01 14:03 UTC``."""
    if value is None:
        return "—"
    return f"{clock.as_utc(value):%Y-%m-%d %H:%M} UTC"


def iso(value: datetime | None) -> str:
    return clock.as_utc(value).isoformat() if value is not None else ""


def ago(value: datetime | None, now: datetime) -> str:
    """How long before ``now``: ``just now``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if value is None:
        return "—"
    seconds = max(0, int((now - clock.as_utc(value)).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86_400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} d ago"


def lease_left(expires: datetime, now: datetime) -> str:
    """A lease's time left in words (``4 min 5 s left``, ``lease expired``); ``live.js`` counts down the same way."""
    seconds = max(0, math.ceil((clock.as_utc(expires) - now).total_seconds()))
    if seconds == 0:
        return "lease expired"
    minutes, rest = divmod(seconds, 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60} min left"
    return f"{minutes} min {rest} s left" if minutes else f"{rest} s left"


def pretty_json(value: Any) -> str:
    """Free-form data as indented JSON (dates as ISO strings)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def scalar(value: Any) -> str:
    """A context value on one line: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def query_string(params: Mapping[str, object], **changes: object) -> str:
    """The current filters with some changed (``None`` drops one), as ``?a=1&b=2`` for a link."""
    merged = {**params, **changes}
    kept = {name: value for name, value in merged.items() if value not in (None, "")}
    return f"?{urlencode(kept)}" if kept else "?"
