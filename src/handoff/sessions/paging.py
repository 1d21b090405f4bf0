"""The paged log's arithmetic: filters, page sizes and windows, as pure functions.

A session's work log and artifacts are each a sequence of entries kept in two places: the *open page* (the
newest entries, an array on the session document that appends ``$push`` to) and *sealed pages* (``log_pages``
documents holding the older entries, in order). Every listing the API offers is a window over one *filter* of
that sequence: all entries, one entry type, one artifact action, the artifacts with a blob. Each sealed page
records, per filter, how many matching entries come before it (``before``) and how many it holds (``counts``);
the session document records how many matching entries all sealed pages hold (``sealed``). So the entry at
position ``k`` of a filter is found with one index seek (the last page whose ``before`` is at most ``k``), and a
window costs the same at the millionth entry as at the tenth.

Nothing here touches the database: ``seals.py``, ``appends.py``, ``removals.py`` and ``log_reads.py`` do, with
the numbers and MongoDB expressions these functions give them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from handoff.sessions.models import PAGE_FILTERS

Kind = Literal["work_log", "artifacts"]
KINDS: tuple[Kind, ...] = get_args(Kind)

ALL = "all"
BLOB = "blob"

#: The filters each kind is listed by; a filter's name is the entry type, the artifact action, ``all`` or ``blob``.
FILTERS: Mapping[str, tuple[str, ...]] = PAGE_FILTERS

Doc = Mapping[str, Any]


def filters_of(kind: Kind, entry: Doc) -> list[str]:
    """The filters an entry belongs to (always ``all``)."""
    matched = [ALL]
    if kind == "work_log":
        if (entry_type := entry.get("type")) is not None:
            matched.append(entry_type)
    else:
        matched.append(entry["action"])
        if entry.get("blob_id") is not None:
            matched.append(BLOB)
    return matched


def zero_counts(kind: Kind) -> dict[str, int]:
    """Every filter of a kind at zero: the ``sealed`` counts of a session without pages."""
    return dict.fromkeys(FILTERS[kind], 0)


def count(kind: Kind, entries: Iterable[Doc]) -> dict[str, int]:
    """How many of these entries each filter of the kind holds (every filter present, zeros included)."""
    tally = Counter(name for entry in entries for name in filters_of(kind, entry))
    return {name: tally[name] for name in FILTERS[kind]}


def condition(kind: Kind, name: str, item: str = "$$this") -> dict[str, Any] | bool:
    """A MongoDB expression true for the entries (bound to ``item``) of one filter."""
    if name not in FILTERS[kind]:
        raise ValueError(f"{kind} has no filter {name!r}")
    if name == ALL:
        return True
    if name == BLOB:
        return {"$eq": [{"$type": f"{item}.blob_id"}, "string"]}
    field = "type" if kind == "work_log" else "action"
    return {"$eq": [f"{item}.{field}", name]}


def id_prefix_condition(prefix: str, item: str = "$$this") -> dict[str, Any]:
    """A MongoDB expression true for entries whose id starts with ``prefix`` (ids are ASCII)."""
    return {"$eq": [{"$substrBytes": [f"{item}.id", 0, len(prefix.encode())]}, prefix]}


def id_prefix_range(prefix: str) -> dict[str, str]:
    """The range of ids that start with ``prefix``, for an index on entry ids.

    Ids use ``[A-Za-z0-9_.:-]``, all below ``\\x7f`` in byte order, so every id with the prefix sorts before
    ``prefix + "\\x7f"``.
    """
    return {"$gte": prefix, "$lt": prefix + "\x7f"}


def filtered(source: Any, cond: Any) -> Any:
    """``source`` (an array expression) restricted to the entries where ``cond`` holds."""
    if cond is True:
        return source
    return {"$filter": {"input": source, "cond": cond}}


def all_of(*conditions: Any) -> Any:
    """The conjunction of expressions, ``True`` ones dropped."""
    kept = [cond for cond in conditions if cond is not True]
    if not kept:
        return True
    return kept[0] if len(kept) == 1 else {"$and": kept}


# Seals -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageBounds:
    """When an open page is full: at ``entries`` entries or ``bytes`` bytes, whichever comes first."""

    entries: int
    bytes: int


def seal_length(sizes: Sequence[int], bounds: PageBounds) -> int:
    """How many of the open page's oldest entries (of these stored sizes) one seal takes: as many as fit half the
    bounds, and at least one (an entry larger than that is a page of its own).

    Half, so a seal leaves the newest half of a full page open: the entries appended while a seal runs are never
    the ones it moves, and appends in flight keep their page check (see ``appends.py``).
    """
    entries, limit = max(1, bounds.entries // 2), bounds.bytes // 2
    total = 0
    for taken, size in enumerate(sizes[:entries]):
        if taken and total + size > limit:
            return taken
        total += size
    return min(len(sizes), entries)


def is_full(length: int, size: int, bounds: PageBounds) -> bool:
    """Whether an open page of ``length`` entries and ``size`` bytes takes no more appends before a seal."""
    return length >= bounds.entries or size >= bounds.bytes


def shift(counts: Mapping[str, int], by: Mapping[str, int], sign: int = 1) -> dict[str, int]:
    """``counts`` moved by ``by`` (``sign`` -1 to take away)."""
    return {name: value + sign * by.get(name, 0) for name, value in counts.items()}


# Windows -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Positions ``[start, end)`` of one filter's sequence, to be listed newest first when ``descending``."""

    start: int
    end: int
    descending: bool

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)

    def split(self, sealed: int) -> tuple[Window, Window]:
        """The part of the window in sealed pages (positions below ``sealed``) and the part in the open page,
        the latter renumbered from the open page's first matching entry."""
        in_pages = Window(self.start, min(self.end, sealed), self.descending)
        in_open = Window(max(self.start, sealed) - sealed, self.end - sealed, self.descending)
        return in_pages, in_open


def window(*, lo: int, hi: int, offset: int, limit: int, descending: bool) -> Window:
    """The window a listing shows of the positions ``[lo, hi)``: ``limit`` of them, ``offset`` from the first
    (ascending) or from the last (descending)."""
    if descending:
        end = max(lo, hi - offset)
        return Window(max(lo, end - limit), end, True)
    start = min(hi, lo + offset)
    return Window(start, min(hi, start + limit), False)
