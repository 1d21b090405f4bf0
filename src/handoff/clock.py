"""The one clock of the service.

Everything that stamps a time calls :func:`now`, so tests can pin it. Times are UTC and truncated to
milliseconds, the precision of a BSON date: what a write returns is exactly what a later read returns.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current UTC time at BSON (millisecond) precision."""
    current = datetime.now(UTC)
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """Read a stored or parsed datetime as aware UTC (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
