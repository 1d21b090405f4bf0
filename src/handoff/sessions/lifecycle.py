"""The session state machine as data: which statuses each operation accepts and what it leads to.

Pure and tiny on purpose: the service turns a row of this table into the status guard of an update's filter,
so two racing requests cannot both win, and the table is tested on its own.
"""

from __future__ import annotations

from enum import StrEnum

from handoff.sessions.models import ENDED_STATUSES, SessionStatus


class Operation(StrEnum):
    """Everything that can be done to a session."""

    PAUSE = "pause"
    RESUME = "resume"
    END = "end"  # complete, fail and end
    HANDOFF = "handoff"
    WRITE = "write"  # appends, context, touch


#: Where each operation leads from an open session; ``None`` keeps the status, END takes the requested one.
_TARGETS: dict[Operation, SessionStatus | None] = {
    Operation.PAUSE: SessionStatus.PAUSED,
    Operation.RESUME: SessionStatus.ACTIVE,
    Operation.END: None,
    Operation.HANDOFF: SessionStatus.PAUSED,
    Operation.WRITE: None,
}


def accepted_statuses(operation: Operation) -> list[str]:
    """The statuses a session may have for the operation to apply: every open one; ended ones accept nothing."""
    del operation  # the same for every operation today; kept as a parameter so the table stays the one truth
    return [status.value for status in SessionStatus if status not in ENDED_STATUSES]


def next_status(operation: Operation, current: SessionStatus, requested: SessionStatus | None = None) -> SessionStatus:
    """The status after the operation, or ``ValueError`` when the table forbids it."""
    if current.value not in accepted_statuses(operation):
        raise ValueError(f"{operation} is not allowed on a {current} session")
    if operation is Operation.END:
        if requested not in ENDED_STATUSES:
            raise ValueError("end needs completed or failed")
        return requested
    target = _TARGETS[operation]
    return current if target is None else target


def moves_to(operation: Operation) -> SessionStatus:
    """The one status an open session takes for an operation that moves it (pause, resume, handoff)."""
    target = _TARGETS[operation]
    if target is None:
        raise ValueError(f"{operation} does not move a session to one fixed status")
    return target


def is_ended(status: SessionStatus | str) -> bool:
    """Whether a session in this status has ended."""
    return SessionStatus(status) in ENDED_STATUSES
