"""Reading a paged log: windows of a selection, the newest entries of several, one entry by id.

Every read starts with one read of the session document: it says whether the session exists in the caller's
workspace and how many selected entries the sealed pages hold, and carries the open page's part of the answer,
computed in MongoDB. Then it reads only the pages the answer needs, found through the pages' indexes: by position
(``before.<filter>``, see ``paging.py``), by entry id, or by the filter's own index. Nothing loads a whole log;
a read costs what it returns, not what the log holds. A session stored before pages existed is one big open page
without pages, and is answered the same way. The newest checkpoints, decisions and errors, spread thin over many
pages, are read from their own small documents instead (``notables.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor

from handoff.errors import NotFound
from handoff.sessions import newest_notables, notables, paging, store
from handoff.sessions.models import ENTRY_ID_INDEX, NOTABLE_TYPES, PAGE_ORDER_INDEX, filter_index_name
from handoff.sessions.paging import ALL, BLOB, Kind, Window

Doc = dict[str, Any]
INT32_MAX = 2**31 - 1

#: Pages fetched per round trip while walking a window backwards through its pages.
PAGE_BATCH = 8


@dataclass(frozen=True, slots=True)
class Selection:
    """Which entries of a kind a read is about: one filter (``paging.FILTERS``), optionally narrowed to ids that
    start with ``id_prefix`` or to artifacts with content (``with_blob``).

    A selection of one filter alone is *positioned*: the pages' ``before`` counts number its entries, so a window
    is found by seeking. A narrowed one is counted over the pages that can hold it, which an index finds (the
    entry-id index for a prefix, the ``blob`` filter's otherwise).
    """

    kind: Kind
    name: str = ALL
    id_prefix: str | None = None
    with_blob: bool = False

    @property
    def positioned(self) -> bool:
        return self.id_prefix is None and not self.with_blob

    def condition(self, item: str = "$$this") -> Any:
        """The MongoDB expression an entry bound to ``item`` must satisfy."""
        return paging.all_of(
            paging.condition(self.kind, self.name, item),
            paging.id_prefix_condition(self.id_prefix, item) if self.id_prefix else True,
            paging.condition(self.kind, BLOB, item) if self.with_blob else True,
        )

    def pages_index(self) -> str:
        """The index that finds the pages of :meth:`pages_holding`."""
        if self.id_prefix is not None:
            return ENTRY_ID_INDEX
        return filter_index_name(self.kind, BLOB if self.with_blob else self.name)

    def pages_holding(self) -> dict[str, Any]:
        """An indexed condition on the pages that can hold the selection's entries."""
        if self.id_prefix is not None:
            return {"entries.id": paging.id_prefix_range(self.id_prefix)}
        return {f"counts.{BLOB if self.with_blob else self.name}": {"$gt": 0}}


# Expressions -------------------------------------------------------------------------------------------------


def _open(kind: Kind) -> dict[str, Any]:
    return {"$ifNull": [f"${kind}", []]}


def _selected(selection: Selection, source: Any) -> Any:
    return paging.filtered(source, selection.condition())


def _sealed(selection: Selection) -> dict[str, Any]:
    return {"$ifNull": [f"$sealed.{selection.kind}.{selection.name}", 0]}


def _first(kind: Kind) -> dict[str, Any]:
    """The session's first page number still in its log (``store.first_page``; pages below are leftovers)."""
    return {"$ifNull": [f"$pages_from.{kind}", 0]}


def _slice(source: Any, start: Any, count: Any) -> dict[str, Any]:
    """``source[start : start + count]``, empty for a count below one ($slice refuses a count of 0)."""
    return {"$cond": [{"$gt": [count, 0]}, {"$slice": [source, start, count]}, []]}


def _is_selected(selection: Selection, source: Any, index: Any) -> dict[str, Any]:
    return {"$let": {"vars": {"this": {"$arrayElemAt": [source, index]}}, "in": selection.condition("$$this")}}


async def _gather(*calls: Awaitable[Any]) -> list[Any]:
    """Run reads side by side; the first failure is raised once every read has finished (none is cancelled)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _head(workspace_id: str, session_id: str, fields: Mapping[str, Any], *, naive_times: bool = False) -> Doc:
    """The session document's answer to ``fields`` (computed fields), or 404."""
    return await store.load(workspace_id, session_id, {"_id": 0, **fields}, naive_times=naive_times)


# Anchors (after= / before=) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where an entry named by ``after``/``before`` is: its page (``None``: the open page), its index there, how
    many selected entries precede it in the whole log (positioned selections), and whether it is selected."""

    page: int | None
    index: int
    rank: int
    selected: bool


def _anchor_fields(selection: Selection, label: str, entry_id: str | None) -> dict[str, Any]:
    """Computed fields of the head read that find an anchor in the open page (index -1: not there)."""
    if entry_id is None:
        return {}
    entries = _open(selection.kind)
    index = {"$indexOfArray": [{"$ifNull": [f"${selection.kind}.id", []]}, entry_id]}
    return {
        f"{label}_index": index,
        f"{label}_rank": {"$size": _selected(selection, {"$slice": [entries, {"$max": [0, index]}]})},
        f"{label}_selected": _is_selected(selection, entries, {"$max": [0, index]}),
    }


async def _anchor(
    workspace_id: str, session_id: str, selection: Selection, *, head: Doc, label: str, entry_id: str | None
) -> Anchor | None:
    """The anchor ``entry_id``, from the head read when it is in the open page, else from its page; 404 when the
    session has no such entry."""
    if entry_id is None:
        return None
    if head[f"{label}_index"] >= 0:
        return Anchor(
            page=None,
            index=head[f"{label}_index"],
            rank=head.get("sealed_count", 0) + head[f"{label}_rank"],
            selected=bool(head[f"{label}_selected"]),
        )
    index = {"$indexOfArray": ["$entries.id", entry_id]}
    page = await store.pages().find_one(
        {
            **store.page_key(workspace_id, session_id, selection.kind),
            "entries.id": entry_id,
            "no": {"$gte": head["first_page"]},
        },
        {
            "_id": 0,
            "no": 1,
            "index": index,
            "rank": {
                "$add": [
                    {"$ifNull": [f"$before.{selection.name}", 0]},
                    {"$size": _selected(selection, {"$slice": ["$entries", index]})},
                ]
            },
            "selected": _is_selected(selection, "$entries", index),
        },
        hint=ENTRY_ID_INDEX,
    )
    if page is None:
        raise NotFound(f"entry {entry_id} not found in session {session_id}")
    return Anchor(page=page["no"], index=page["index"], rank=page["rank"], selected=bool(page["selected"]))


# Positioned selections ---------------------------------------------------------------------------------------


def _speculative_open(selection: Selection, *, offset: int, limit: int, descending: bool) -> dict[str, Any]:
    """The open page's part of a window without anchors, computed with the session's own counts: exact when
    descending, a superset starting at the window's first open entry when ascending (cut to size by the caller)."""
    selected = _selected(selection, _open(selection.kind))
    if descending:
        upto = {"$subtract": [{"$size": "$$f"}, offset]}
        start = {"$max": [0, {"$subtract": [upto, limit]}]}
        part: Any = _slice("$$f", start, {"$subtract": [upto, start]})
    else:
        part = {"$slice": ["$$f", {"$max": [0, {"$subtract": [offset, _sealed(selection)]}]}, limit]}
    return {"$let": {"vars": {"f": selected}, "in": part}}


async def window_from_pages(
    workspace_id: str,
    session_id: str,
    selection: Selection,
    window: Window,
    *,
    first: int,
    naive_times: bool = False,
) -> list[Doc]:
    """The entries at positions ``[start, end)`` of a positioned selection's sealed part, oldest first (of the
    pages numbered ``first`` or more: the session's ``pages_from``; ``naive_times``: see ``store.as_stored``).

    The pages that hold the window are exactly the one holding ``start`` (the last whose first position is at or
    below it) and those that begin inside the window, so two index reads on that filter's ``before`` find them,
    each page cut on the server to its part of the window. The first read has ``limit`` 1 and the second reads
    a range to its end, so the server closes both cursors with their answers: no page is read for nothing, and
    no cursor is left open (closing one costs a round trip of its own, ``killCursors``). The second read is
    skipped when the first page reaches the window's end: always for a window within one page, which is nearly
    every window of the whole log (a page holds hundreds of entries); a filter's window spreads over pages (200
    checkpoints of the replay context: dozens of them), read in that one range.
    """
    if window.size == 0:
        return []
    pages = store.as_stored(store.pages()) if naive_times else store.pages()
    holding = await _pages(
        workspace_id,
        session_id,
        selection,
        window,
        {"$lte": window.start},
        first=first,
        pages=pages,
        descending=True,
        limit=1,
    ).to_list(1)
    if not holding:
        return []
    top = holding[0]
    if top["before"] + top["count"] >= window.end:
        return list(top["items"])
    beyond = {"$gt": window.start, "$lt": window.end}
    rest = _pages(
        workspace_id, session_id, selection, window, beyond, first=first, pages=pages, descending=False, limit=0
    )
    return [*top["items"], *(entry for page in await rest.to_list(None) for entry in page["items"])]


def _pages(
    workspace_id: str,
    session_id: str,
    selection: Selection,
    window: Window,
    before: dict[str, int],
    *,
    first: int,
    pages: AsyncCollection[Doc],
    descending: bool,
    limit: int,
) -> AsyncCursor[Doc]:
    """The selection's pages whose first position matches ``before``, in that order: each page's first position
    (``before``), how many selected entries it holds (``count``) and those of ``window`` (``items``)."""
    name = selection.name
    start = {"$max": [0, {"$subtract": [window.start, "$$b"]}]}
    count = {"$subtract": [{"$min": [{"$size": "$$f"}, {"$subtract": [window.end, "$$b"]}]}, start]}
    cut = {
        "$let": {
            "vars": {"f": _selected(selection, "$entries"), "b": f"$before.{name}"},
            "in": _slice("$$f", start, count),
        }
    }
    return (
        pages.find(
            {
                **store.page_key(workspace_id, session_id, selection.kind),
                f"counts.{name}": {"$gt": 0},
                f"before.{name}": before,
                "no": {"$gte": first},
            },
            {"_id": 0, "before": f"$before.{name}", "count": f"$counts.{name}", "items": cut},
        )
        .sort(f"before.{name}", -1 if descending else 1)
        .hint(filter_index_name(selection.kind, name))  # the planner may prefer page order and sort in memory
        .limit(limit)
        .batch_size(limit or window.size + 1)  # one batch: a window of n entries begins at most n pages
    )


async def _positioned_page(
    workspace_id: str,
    session_id: str,
    selection: Selection,
    *,
    offset: int,
    limit: int,
    descending: bool,
    after: str | None,
    before: str | None,
) -> tuple[list[Doc], int]:
    anchored = after is not None or before is not None
    fields: dict[str, Any] = {
        "sealed_count": _sealed(selection),
        "first_page": _first(selection.kind),
        "open_count": {"$size": _selected(selection, _open(selection.kind))},
        **_anchor_fields(selection, "after", after),
        **_anchor_fields(selection, "before", before),
    }
    if not anchored:
        fields["open_items"] = _speculative_open(selection, offset=offset, limit=limit, descending=descending)
    head = await _head(workspace_id, session_id, fields)
    sealed = head["sealed_count"]
    first, last = await _gather(
        _anchor(workspace_id, session_id, selection, head=head, label="after", entry_id=after),
        _anchor(workspace_id, session_id, selection, head=head, label="before", entry_id=before),
    )
    lo = first.rank + first.selected if first else 0
    hi = last.rank if last else sealed + head["open_count"]
    window = paging.window(lo=lo, hi=max(lo, hi), offset=offset, limit=limit, descending=descending)
    in_pages, in_open = window.split(sealed)
    if anchored:
        read_open = _head(
            workspace_id,
            session_id,
            {"items": _slice(_selected(selection, _open(selection.kind)), in_open.start, in_open.size)},
        )
        from_pages, opened = await _gather(
            window_from_pages(workspace_id, session_id, selection, in_pages, first=head["first_page"]), read_open
        )
        open_items: list[Doc] = opened["items"]
    else:
        from_pages = await window_from_pages(workspace_id, session_id, selection, in_pages, first=head["first_page"])
        open_items = head["open_items"][: in_open.size]
    entries: list[Doc] = [*from_pages, *open_items]
    return (entries[::-1] if descending else entries), max(0, hi - lo)


# Narrowed selections -----------------------------------------------------------------------------------------


def _between(source: Any, after: Anchor | None, before: Anchor | None, page: int | None) -> Any:
    """``source`` (the entries of page ``page``, ``None`` for the open page) cut to what lies between the anchors."""
    if before is not None and before.page == page:
        source = {"$slice": [source, before.index]}
    if after is not None and after.page == page:
        source = {"$slice": [source, after.index + 1, INT32_MAX]}
    return source


def _page_entries_between(after: Anchor | None, before: Anchor | None) -> Any:
    """A page's entries cut to what lies between the anchors (only the anchors' own pages are cut)."""
    anchor_pages = {anchor.page for anchor in (after, before) if anchor is not None and anchor.page is not None}
    if not anchor_pages:
        return "$entries"
    branches = [
        {"case": {"$eq": ["$no", page]}, "then": _between("$entries", after, before, page)}
        for page in sorted(anchor_pages)
    ]
    return {"$switch": {"branches": branches, "default": "$entries"}}


async def _narrowed_page(
    workspace_id: str,
    session_id: str,
    selection: Selection,
    *,
    offset: int,
    limit: int,
    descending: bool,
    after: str | None,
    before: str | None,
) -> tuple[list[Doc], int]:
    """Count the selected entries page by page (only pages the selection's index points at, between the
    anchors), then fetch the pages the window falls in, cut on the server."""
    head = await _head(
        workspace_id,
        session_id,
        {
            "pages_version": 1,
            "first_page": _first(selection.kind),
            **_anchor_fields(selection, "after", after),
            **_anchor_fields(selection, "before", before),
        },
    )
    first, last = await _gather(
        _anchor(workspace_id, session_id, selection, head=head, label="after", entry_id=after),
        _anchor(workspace_id, session_id, selection, head=head, label="before", entry_id=before),
    )
    # Only the pages sealed before the head was read, as ``stream_entries`` reads (an old-layout session's pages
    # being written by its migration, ``migration.py``, are not its log yet), and none below its ``pages_from``
    # (leftovers of a clear being purged, ``purges.py``).
    pages: dict[str, Any] = {"$lt": head.get("pages_version", 0), "$gte": head["first_page"]}
    query = {**store.page_key(workspace_id, session_id, selection.kind), **selection.pages_holding(), "no": pages}
    if first is not None:
        pages["$gte"] = INT32_MAX if first.page is None else max(first.page, head["first_page"])
    if last is not None and last.page is not None:
        pages["$lte"] = last.page
    selected = _selected(selection, _page_entries_between(first, last))
    counting = [
        {"$match": query},
        {"$project": {"_id": 0, "no": 1, "n": {"$size": selected}}},
        {"$match": {"n": {"$gt": 0}}},
        {"$sort": {"no": 1}},
    ]
    reading_open = last is None or last.page is None
    counted, opened = await _gather(
        (await store.pages().aggregate(counting, hint=selection.pages_index())).to_list(None),
        _head(
            workspace_id,
            session_id,
            {"items": _selected(selection, _between(_open(selection.kind), first, last, None)) if reading_open else []},
        ),
    )
    open_part: list[Doc] = opened["items"]
    total = sum(row["n"] for row in counted) + len(open_part)
    window = paging.window(lo=0, hi=total, offset=offset, limit=limit, descending=descending)
    wanted: dict[int, tuple[int, int]] = {}
    position = 0
    for row in counted:
        start, end = max(window.start - position, 0), min(window.end - position, row["n"])
        if end > start:
            wanted[row["no"]] = (start, end)
        position += row["n"]
    entries: list[Doc] = []
    if wanted:
        cursor = store.pages().find(
            {**store.page_key(workspace_id, session_id, selection.kind), "no": {"$in": list(wanted)}},
            {"_id": 0, "no": 1, "items": selected},
            hint=PAGE_ORDER_INDEX,
        )
        found = {page["no"]: page["items"] async for page in cursor}
        for no in sorted(wanted):
            start, end = wanted[no]
            entries.extend(found.get(no, [])[start:end])
    entries.extend(open_part[max(window.start - position, 0) : max(window.end - position, 0)])
    return (entries[::-1] if descending else entries), total


# The reads ---------------------------------------------------------------------------------------------------


async def page(
    workspace_id: str,
    session_id: str,
    selection: Selection,
    *,
    offset: int = 0,
    limit: int = 100,
    descending: bool = False,
    after: str | None = None,
    before: str | None = None,
) -> tuple[list[Doc], int]:
    """A window of the selection (``offset``/``limit`` from the oldest, or from the newest when ``descending``),
    optionally only the entries after and/or before two entries (exclusive, in log order), and how many entries
    the selection holds there."""
    read = _positioned_page if selection.positioned else _narrowed_page
    return await read(
        workspace_id,
        session_id,
        selection,
        offset=offset,
        limit=limit,
        descending=descending,
        after=after,
        before=before,
    )


async def newest(
    workspace_id: str,
    session_id: str,
    wanted: Mapping[str, tuple[Selection, int]],
    fields: Mapping[str, Any],
) -> tuple[Doc, dict[str, list[Any]]]:
    """The session's ``fields`` and, for each label in ``wanted``, the newest ``n`` entries of its (positioned)
    selection, oldest first: one read of the session, plus sealed reads only where the open page holds too few.

    A notable type's sealed entries come from the session's newest notables (``newest_notables.py``: one
    document for the three types, its entries already as the answer's JSON text, ``bytes`` in the lists here) when
    that copy is in step with the session, else from their notable documents (``notables.py``), the newest ``n``
    in one index read; only those sealed before notable documents existed (``sealed`` less ``noted``, the oldest)
    come from the pages.

    Its dates, the fields' and the entries', are naive UTC datetimes (``store.as_stored``): the contexts read up
    to ~620 entries, and the answer writes their times as text.
    """
    head_read = _head(
        workspace_id,
        session_id,
        {
            **fields,
            "_pages_version": {"$ifNull": ["$pages_version", 0]},
            **{f"_first_{kind}": _first(kind) for kind in paging.KINDS},
            **{
                f"{label}_{part}": expression
                for label, (selection, n) in wanted.items()
                for part, expression in (
                    ("sealed", _sealed(selection)),
                    ("noted", notables.noted_field(selection.name) if _is_notable(selection) else {"$literal": 0}),
                    ("tail", {"$slice": [_selected(selection, _open(selection.kind)), -n]}),
                )
            },
        },
        naive_times=True,
    )
    # The newest notables of all three types are one document, read beside the session (whether it is in step is
    # known once both are in: a seal between the two reads leaves it out of step, and it is read around).
    copy: newest_notables.Copy | None = None
    if any(_is_notable(selection) for selection, _ in wanted.values()):
        head, copy = await _gather(head_read, newest_notables.read(workspace_id, session_id))
    else:
        head = await head_read
    labels = list(wanted)
    below = head.pop("_pages_version")
    firsts = {kind: head.pop(f"_first_{kind}") for kind in paging.KINDS}
    lists = copy.lists if copy is not None and copy.version == below else None

    async def older(label: str) -> list[Any]:
        selection, n = wanted[label]
        sealed, noted = head.pop(f"{label}_sealed"), head.pop(f"{label}_noted")
        missing = n - len(head[f"{label}_tail"])
        if missing <= 0 or sealed == 0:
            return []
        found: list[Any] = []
        if noted > 0:
            texts = lists.get(selection.name, [])[-min(missing, noted) :] if lists is not None else None
            if texts is not None and missing <= newest_notables.LENGTH and None not in texts:
                found = texts
            else:  # no copy in step, or one of the entries is too large for it
                found = await notables.newest(
                    workspace_id, session_id, selection.name, n=missing, below=below, first=firsts["work_log"]
                )
        missing, unnoted = missing - len(found), max(0, sealed - noted)
        if missing <= 0 or unnoted == 0:
            return found
        window = Window(max(0, unnoted - missing), unnoted, descending=True)
        older_part = await window_from_pages(
            workspace_id, session_id, selection, window, first=firsts[selection.kind], naive_times=True
        )
        return [*older_part, *found]

    sealed_parts = await _gather(*(older(label) for label in labels))
    entries = {label: [*part, *head.pop(f"{label}_tail")] for label, part in zip(labels, sealed_parts, strict=True)}
    return head, entries


def _is_notable(selection: Selection) -> bool:
    """Whether a selection's sealed entries are kept as notable documents too (one notable type, whole)."""
    return selection.kind == "work_log" and selection.positioned and selection.name in NOTABLE_TYPES


async def _in_pages(workspace_id: str, session_id: str, kind: Kind, ids: list[str], *, first: int) -> list[Doc]:
    """The pages among a session's sealed pages (numbered ``first`` or more) holding entries with these ids: each
    page's ``no`` and those entries (``found``), read through the pages' entry-id index."""
    cursor = store.pages().find(
        {**store.page_key(workspace_id, session_id, kind), "entries.id": {"$in": ids}, "no": {"$gte": first}},
        {"_id": 0, "no": 1, "found": {"$filter": {"input": "$entries", "cond": {"$in": ["$$this.id", ids]}}}},
        hint=ENTRY_ID_INDEX,
    )
    return await cursor.to_list(None)


async def in_sealed_pages(workspace_id: str, session_id: str, kind: Kind, ids: list[str], *, first: int) -> list[Doc]:
    """The entries with these ids among a session's sealed pages numbered ``first`` or more (its ``pages_from``)."""
    pages = await _in_pages(workspace_id, session_id, kind, ids, first=first)
    return [entry for page in pages for entry in page["found"]]


async def find_entry(workspace_id: str, session_id: str, kind: Kind, entry_id: str) -> Doc:
    """One entry by id (the open page and the pages' entry-id index, read side by side); 404 for a missing
    session or entry. The pages are read before the session says where its log starts, so a clear's leftovers
    are left out afterwards."""
    matching = {"$filter": {"input": _open(kind), "cond": {"$eq": ["$$this.id", entry_id]}}}
    in_open, in_pages = await _gather(
        _head(workspace_id, session_id, {"found": matching, "first_page": _first(kind)}),
        _in_pages(workspace_id, session_id, kind, [entry_id], first=0),
    )
    live = [entry for page in in_pages if page["no"] >= in_open["first_page"] for entry in page["found"]]
    found: list[dict[str, Any]] = [*in_open["found"], *live]
    if not found:
        raise NotFound(f"entry {entry_id} not found in session {session_id}")
    return found[0]


async def stream_entries(doc: Doc, kind: Kind) -> AsyncIterator[Doc]:
    """Every entry of a kind of the session ``doc`` (as read, with its open page), oldest first, holding one batch
    of pages at a time: for a reader that wants a whole log of any length (``handoff export``).

    The pages read are the ones sealed before ``doc`` was (``no`` below its ``pages_version``), so together with
    its open page they are the log as it was when ``doc`` was read, even if seals run meanwhile.
    """
    cursor = store.pages().find(
        {
            **store.page_key(doc["workspace_id"], doc["session_id"], kind),
            "no": {"$gte": store.first_page(doc, kind), "$lt": doc.get("pages_version", 0)},
        },
        {"_id": 0, "entries": 1},
        sort=[("no", 1)],
        hint=PAGE_ORDER_INDEX,
        batch_size=PAGE_BATCH,
    )
    async for page in cursor:
        for entry in page["entries"]:
            yield entry
    for entry in doc.get(kind) or []:
        yield entry
