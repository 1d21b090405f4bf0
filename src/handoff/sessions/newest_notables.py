"""The newest 200 checkpoints, decisions and errors of a session's sealed pages, in one document, as answered.

The replay context lists each notable type's newest 200 entries. Read from the notable documents
(``notables.py``), that is three index reads of 200 small documents each, and then each entry shaped into its
answer: at 1,000,000 entries the three reads cost ~2.6 ms and the shaping ~0.75 ms of a route that answers in
~2 ms at 10 entries (docs/benchmarks.md, "The contexts' answers without a model per entry"). Here the same lists
are kept in one :class:`~handoff.sessions.models.NewestNotables` document per session, each entry already as the
answer's JSON text (``context_answers.typed_text``): one ``_id`` read, and neither a dict to decode nor
an entry to shape or encode (the answer embeds the text, ``context_answers.replay_context``). Measured with raw
PyMongo on 600 entries (load ~2.7): one document of dicts read and encoded 3.34 ms, of JSON texts 1.98 ms, an
empty ``find_one`` 1.05 ms. Read beside the session document (``log_reads.newest``), it took the route at
1,000,000 entries from 2.83x its 10-entry time to 1.33x (docs/benchmarks.md, "The newest notables in one
document, as answered").

It is a copy, and a copy is only as good as the writes that keep it. Each write that changes what the lists
hold changes the session's ``pages_version`` in the same transaction (a seal, a removal of a sealed entry, a
clear), and keeps this document in step only if it found it in step with the session (``version``); otherwise
it leaves it behind, and a reader that finds a ``version`` other than the session's (or a ``shape`` other than
:data:`SHAPE`) reads the notable documents, as before this module. So a stale copy costs time, never a wrong
answer, and the next seal rebuilds it from the notable documents in its transaction.

The lists hold what the notable documents hold: a session's entries sealed before those existed (its ``sealed``
less its ``noted``) are in neither, and are read from the pages (``log_reads.newest``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from handoff.sessions import notables
from handoff.sessions.context_answers import typed_text
from handoff.sessions.models import CONTEXT_LIST_LIMIT, NOTABLE_TYPES, NewestNotables, session_key

Doc = dict[str, Any]
#: Per notable type, its entries' JSON texts (``None`` for one too large to copy), oldest first.
Lists = dict[str, list[bytes | None]]

#: How many entries each list holds: as many as a context lists.
LENGTH = CONTEXT_LIST_LIMIT
#: The largest entry text copied. An entry may hold 64 KiB of data and a 10,000-character message, so 600 of
#: them could pass MongoDB's 16 MiB document limit and fail every seal; past this size an entry is held by its id
#: only (its text ``None``), and a list that would need it is read from the notable documents instead. 600 texts
#: of this size and their ids stay under 10 MiB.
MAX_TEXT_BYTES = 16 * 1024
#: The form of the stored entries: ``context_answers.typed_text``'s. Change it with that form, and
#: every stored copy is read around (and rebuilt by its session's next seal) instead of answering the old form.
SHAPE = 1


def collection() -> AsyncCollection[Doc]:
    return NewestNotables.get_pymongo_collection()


def _key(workspace_id: str, session_id: str) -> Doc:
    """The filter of a session's document (``_id``, with the shard key)."""
    return {"_id": session_key(workspace_id, session_id), "workspace_id": workspace_id, "session_id": session_id}


def _text(entry: Mapping[str, Any]) -> bytes | None:
    """The entry's JSON text as the answer writes it (``context_answers.typed_text``); ``None`` past
    :data:`MAX_TEXT_BYTES`."""
    text = typed_text(entry)
    return text if len(text) <= MAX_TEXT_BYTES else None


def _arrays(entries: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """A type's two parallel arrays, by field: its entries as answered, and their ids (what a removal looks for)."""
    listed = list(entries)
    return {"lists": [_text(entry) for entry in listed], "ids": [entry["id"] for entry in listed]}


def _fields(name: str, entries: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """:func:`_arrays` as the paths an update sets or pushes (``lists.<type>``, ``ids.<type>``)."""
    return {f"{field}.{name}": values for field, values in _arrays(entries).items()}


def _document(workspace_id: str, session_id: str, version: int, entries: Mapping[str, Iterable[Doc]]) -> Doc:
    document: Doc = {**_key(workspace_id, session_id), "version": version, "shape": SHAPE, "lists": {}, "ids": {}}
    for name, listed in entries.items():
        for field, values in _arrays(listed).items():
            document[field][name] = values
    return document


@dataclass(frozen=True, slots=True)
class Copy:
    """A session's copy as read: it answers for the session only if ``version`` is the ``pages_version`` the
    reader read of the session."""

    version: int
    lists: Lists


async def read(workspace_id: str, session_id: str) -> Copy | None:
    """The session's copy (``None`` when there is none, or one of another shape)."""
    found = await collection().find_one(
        _key(workspace_id, session_id), {"_id": 0, "version": 1, "shape": 1, "lists": 1}
    )
    if found is None or found["shape"] != SHAPE:
        return None
    return Copy(found["version"], found["lists"])


def of_documents(workspace_id: str, session_id: str, version: int, noted: Iterable[Mapping[str, Any]]) -> Doc:
    """The document of a session whose pages and notable documents are written all at once (a migration, an
    import): ``noted`` are its notable documents, ``version`` its ``pages_version``."""
    ordered = sorted(noted, key=lambda document: (document["no"], document["at"]))
    lists = {name: [document["entry"] for document in ordered if document["type"] == name] for name in NOTABLE_TYPES}
    return _document(workspace_id, session_id, version, {name: entries[-LENGTH:] for name, entries in lists.items()})


async def write(workspace_id: str, session_id: str, *, version: int, noted: Iterable[Mapping[str, Any]]) -> None:
    """Write :func:`of_documents` over whatever copy the session had (a migration, before its flip)."""
    await put([of_documents(workspace_id, session_id, version, noted)])


async def put(documents: Sequence[Mapping[str, Any]]) -> None:
    """Write these documents of :func:`of_documents` over whatever copies their sessions had, in one unordered
    bulk write (an import, once their sessions are written: a copy written before would be a stranger's if the
    session's insert then failed, and one killed meanwhile is only missing, which readers read around)."""
    if documents:
        replacements: list[ReplaceOne[Any]] = [
            ReplaceOne(_key(document["workspace_id"], document["session_id"]), document, upsert=True)
            for document in documents
        ]
        await collection().bulk_write(replacements, ordered=False)


async def rebuild(workspace_id: str, session_id: str, *, version: int, first: int, session: AsyncClientSession) -> None:
    """Write the document afresh from the notable documents of pages numbered ``first`` (the session's
    ``pages_from``) to below ``version`` (its ``pages_version`` once this transaction commits)."""
    entries = {
        name: await notables.newest(
            workspace_id, session_id, name, n=LENGTH, below=version, first=first, session=session
        )
        for name in NOTABLE_TYPES
    }
    document = _document(workspace_id, session_id, version, entries)
    await collection().replace_one(_key(workspace_id, session_id), document, upsert=True, session=session)


async def after_seal(
    workspace_id: str,
    session_id: str,
    *,
    version: int,
    noted: Iterable[Mapping[str, Any]],
    first: int,
    session: AsyncClientSession,
) -> None:
    """In a seal's transaction: the page numbered ``version`` (the ``pages_version`` it moves past) was sealed with
    the notable documents ``noted``. In step, their entries join the lists' newest end; else the lists are rebuilt."""
    pushed: dict[str, list[Doc]] = {}
    for document in noted:
        pushed.setdefault(document["type"], []).append(document["entry"])
    update: Doc = {"$set": {"version": version + 1}}
    if pushed:
        update["$push"] = {
            path: {"$each": values, "$slice": -LENGTH}
            for name, entries in pushed.items()
            for path, values in _fields(name, entries).items()
        }
    result = await collection().update_one(
        {**_key(workspace_id, session_id), "version": version, "shape": SHAPE}, update, session=session
    )
    if not result.matched_count:
        await rebuild(workspace_id, session_id, version=version + 1, first=first, session=session)


async def after_removal(
    workspace_id: str,
    session_id: str,
    entry: Mapping[str, Any],
    *,
    version: int,
    first: int,
    session: AsyncClientSession,
) -> None:
    """In a removal's transaction, after the notable document of ``entry`` (a sealed entry) was deleted and while
    the session's ``pages_version`` moves from ``version`` to the next: the entry leaves its list, which is
    refilled from the notable documents (the one it held 201st moves up), or, when it was in no list, the copy
    only keeps step."""
    entry_type = entry.get("type")
    key = {**_key(workspace_id, session_id), "version": version, "shape": SHAPE}
    if entry_type in NOTABLE_TYPES:
        held = await collection().count_documents({**key, f"ids.{entry_type}": entry["id"]}, session=session)
        if held:
            refilled = await notables.newest(
                workspace_id, session_id, entry_type, n=LENGTH, below=version + 1, first=first, session=session
            )
            update = {"version": version + 1, **_fields(entry_type, refilled)}
            await collection().update_one(key, {"$set": update}, session=session)
            return
    await keep_step(workspace_id, session_id, version=version, session=session)


async def keep_step(workspace_id: str, session_id: str, *, version: int, session: AsyncClientSession) -> None:
    """In a transaction that moves the session's ``pages_version`` from ``version`` to the next without changing
    the notable entries (an artifact's seal or removal, a clear of the artifacts): the copy, if in step, stays so."""
    await collection().update_one(
        {**_key(workspace_id, session_id), "version": version}, {"$set": {"version": version + 1}}, session=session
    )


async def forget(workspace_id: str, session_id: str, *, session: AsyncClientSession) -> None:
    """In a clear of the work log or an erasure of the session: the copy goes with what it copies."""
    await collection().delete_one(_key(workspace_id, session_id), session=session)
