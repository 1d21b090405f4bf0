"""The building blocks the analytics pipelines share: the first ``$match``, the time window, bucket and
percentile arithmetic, and small expression helpers. Pure data, no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from handoff.sessions.models import SessionStatus

Stage = dict[str, Any]
Pipeline = list[Stage]

ENDED = [SessionStatus.COMPLETED.value, SessionStatus.FAILED.value]
#: The ``by_agent_type`` key of sessions that have no agent type.
UNKNOWN_AGENT = "unknown"
#: The percentiles ``summary`` reports, in percent.
PERCENTILES = (50, 95)
MINUTE_MS = 60_000


class Bucket(StrEnum):
    """The width of an activity bucket (UTC)."""

    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class Window:
    """Which sessions a figure covers, by ``started_at``: ``since`` inclusive, ``until`` exclusive."""

    since: datetime | None = None
    until: datetime | None = None


ALL_TIME = Window()
"""No window: every session of the workspace."""


def window_conditions(window: Window, field: str = "started_at") -> dict[str, Any]:
    """The window as a condition on ``field`` (by default the sessions' ``started_at``; none for all time)."""
    bounds: dict[str, datetime] = {}
    if window.since is not None:
        bounds["$gte"] = window.since
    if window.until is not None:
        bounds["$lt"] = window.until
    return {field: bounds} if bounds else {}


def match_sessions(workspace_id: str, window: Window, **conditions: Any) -> Stage:
    """The first stage of every pipeline: one workspace, the time window, and any further conditions."""
    return {"$match": {"workspace_id": workspace_id, **conditions, **window_conditions(window)}}


def is_(field: str, value: str) -> dict[str, Any]:
    return {"$eq": [f"${field}", value]}


def count_if(condition: dict[str, Any], amount: Any = 1) -> dict[str, Any]:
    return {"$sum": {"$cond": [condition, amount, 0]}}


def round2(expression: Any) -> dict[str, Any]:
    """Two decimals; 0 where the expression has nothing to average (null)."""
    return {"$round": [{"$ifNull": [expression, 0]}, 2]}


def nearest_rank(sorted_values: str, percent: int) -> dict[str, Any]:
    """The ``percent``-th percentile of a sorted array by nearest rank: the value at 1-based rank
    ``ceil(percent * n / 100)``, computed in integers so no float error moves the rank; null for an empty array."""
    rank = {"$floor": {"$divide": [{"$add": [{"$multiply": [percent, "$$n"]}, 99]}, 100]}}
    return {
        "$let": {
            "vars": {"n": {"$size": sorted_values}},
            "in": {
                "$cond": [
                    {"$eq": ["$$n", 0]},
                    None,
                    {"$arrayElemAt": [sorted_values, {"$toInt": {"$subtract": [rank, 1]}}]},
                ]
            },
        }
    }


def pairs_to_object(field: str) -> dict[str, Any]:
    return {"$arrayToObject": {"$map": {"input": f"${field}", "in": {"k": "$$this._id", "v": "$$this.count"}}}}


#: Bucket widths; UTC hours and days are whole multiples of these milliseconds since the epoch.
BUCKET_MS = {Bucket.HOUR: 3_600_000, Bucket.DAY: 86_400_000}
#: Whole days (about 10,000 years) added before ``$mod`` so dates before 1970 round down too.
_EPOCH_SHIFT_MS = 3_652_500 * 86_400_000


def bucket_start(field: str, bucket: Bucket) -> dict[str, Any]:
    """The start of the UTC hour or day of a date field (null stays null).

    Epoch-aligned arithmetic gives what ``$dateTrunc`` gives in UTC at about half its cost per session (it is
    evaluated once or twice for every session of the window).
    """
    millis = {"$add": [{"$toLong": f"${field}"}, _EPOCH_SHIFT_MS]}
    return {"$subtract": [f"${field}", {"$mod": [millis, BUCKET_MS[bucket]]}]}
