"""Writes the blocking client, ``_sync.py``, from the async one, ``_async.py``: each route is written once.

The same for the sync LangGraph saver (:data:`INTEGRATION_TWINS`): ``integrations/_langgraph_sync.py`` and
``integrations/_entries_sync.py`` from their async sources, so a sync graph calls ``HandoffClient`` on its own
threads (httpx's blocking client costs about half the CPU per request of the async one driven from another
thread: ``scripts/bench_request_floor.py``).

Run ``python -m handoff.client._unasync`` after changing ``_async.py``; with ``--check`` it writes nothing and
exits 1 when ``_sync.py`` is stale (``tests/test_client_generated.py`` makes the same comparison, so CI fails on
drift). Needs the dev extra (``unasync``, ``ruff``).

How: `unasync <https://pypi.org/project/unasync/>`_, the tool PyMongo's ``synchro`` is built on, rewrites the
code token by token: ``async def``, ``async for`` and ``async with`` lose their ``async``, ``await`` goes, and
names are swapped (its own table: ``__aenter__``, ``__aexit__``, ``__aiter__``, ``__anext__``, ``AsyncIterator``,
``AsyncIterable``, ``asynccontextmanager``, ``StopAsyncIteration``; ours: :data:`NAMES`). It leaves strings and
comments alone, so the module docstring is replaced by :data:`SYNC_DOCSTRING` and the few phrases of the class
docstring that differ are swapped by :data:`PROSE`. Then ruff sorts the imports (``anyio`` became ``time``) and
formats the file like any other of the project.

What the generator makes of the streaming methods (``_core`` keeps building the requests; the drivers are
written once, next to ``_run``):

- **Upload from a file object** (``upload_blob``): ``RequestSpec.content`` is handed to
  ``build_request(content=...)``, and the method passes ``_FileChunks(file)``, whose
  ``async def __aiter__(self) -> AsyncIterator[bytes]`` yields ``file.read(UPLOAD_CHUNK_BYTES)`` until it is
  empty (the twin has ``__iter__``). Uploads are ``Call(..., retry=False)``: each POST stores a new blob.
- **Download into a file** (``download_blob``): ``_run(call, stream=True)`` sends with ``stream=True`` and reads
  and closes a non-2xx answer before ``execute`` turns it into an error (retries happen before the first byte);
  the ``Call`` parses to the open ``httpx.Response``, and the ``@asynccontextmanager`` ``_stream(call)`` yields
  it and closes it; the method writes ``response.aiter_bytes()`` into the file.
- **Server-sent events** (``events``): httpx-sse's ``EventSource(response).aiter_sse()`` (the twin:
  ``iter_sse()``, one entry of :data:`NAMES`) parses the stream; :class:`handoff.client._events.Subscription`
  (sans-I/O, like ``execute``) builds each connection's request with ``Last-Event-ID`` and says how long to wait
  before reconnecting. The method is an async generator, its twin a generator (``for event in
  client.events()``)::

      while True:
          try:
              async with self._stream(subscription.call()) as response:
                  subscription.opened()
                  async for message in EventSource(response).aiter_sse():
                      if (event := subscription.read(message)) is not None:
                          yield event
          except (HandoffClientError, httpx.TransportError) as exc:
              wait = subscription.lost(exc)
          else:  # not under the except: ended() may raise, giving up on a stream that is always dropped
              wait = subscription.ended()
          await anyio.sleep(wait)

Annotate async generators ``AsyncIterator[X]``: the twin is ``Iterator[X]``. ``anyio`` is there for
``anyio.sleep`` alone: the name becomes ``time``, so any other ``anyio`` function (``to_thread``, ``Lock``) would
fail mypy in ``_sync.py``.

Why generated code rather than one table of operations in ``_core`` driving both classes: the methods stay
plain methods, with the signatures and docstrings mypy, IDEs and ``help()`` read, on both classes. A table
would need a descriptor typed per class, and a ``ParamSpec`` cannot change between the twins what a stream
method takes or returns (``AsyncIterator`` or ``Iterator``), so each kind of route would need a driver pair.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import unasync  # type: ignore[import-untyped]

HERE = Path(__file__).parent
SOURCE = HERE / "_async.py"
TARGET = HERE / "_sync.py"
INTEGRATIONS = HERE.parent / "integrations"

NAMES = {
    "AsyncHandoffClient": "HandoffClient",
    # httpx names its blocking types plainly, where unasync would turn Async<X> into Sync<X>
    # (right for ``AsyncByteStream``, whose twin is ``SyncByteStream``, so that one needs no entry).
    "AsyncClient": "Client",
    "AsyncBaseTransport": "BaseTransport",
    "AsyncHTTPTransport": "HTTPTransport",
    "aclose": "close",
    "aread": "read",
    "aiter_bytes": "iter_bytes",
    "aiter_text": "iter_text",
    "aiter_lines": "iter_lines",
    "aiter_raw": "iter_raw",
    "aiter_sse": "iter_sse",  # httpx-sse's EventSource
    "anyio": "time",  # for anyio.sleep: the one anyio function _async.py uses
}

SYNC_DOCSTRING = (
    '"""``HandoffClient``: every route of the REST contract as one blocking method, the twin of '
    "``AsyncHandoffClient``.\n"
    "\n"
    "Generated from ``_async.py`` by ``python -m handoff.client._unasync``: do not edit this file; change\n"
    "``_async.py`` and run that command (``tests/test_client_generated.py`` fails while the two differ).\n"
    '"""'
)

# Phrases of _async.py's docstrings that differ in the blocking twin. Each must be found, so an entry that no
# longer matches fails the generator instead of leaving async wording in _sync.py.
PROSE = {
    "An async client": "A blocking client",
    "``async with``": "``with``",
    ":meth:`aclose`": ":meth:`close`",
}


@dataclass(frozen=True)
class Twin:
    """One async module and the blocking module generated from it: the names to swap beyond unasync's own, the
    generated module's docstring, and the phrases of the source's other docstrings that differ."""

    source: Path
    target: Path
    names: Mapping[str, str]
    docstring: str
    prose: Mapping[str, str] = field(default_factory=dict)


def _generated_docstring(summary: str, source: str) -> str:
    return (
        f'"""{summary}\n'
        "\n"
        f"Generated from ``{source}`` by ``python -m handoff.client._unasync``: do not edit this file; change\n"
        f"``{source}`` and run that command (``tests/test_client_generated.py`` fails while the two differ).\n"
        '"""'
    )


CLIENT = Twin(SOURCE, TARGET, NAMES, SYNC_DOCSTRING, PROSE)
#: The sync LangGraph saver's code: its store over ``HandoffClient`` and the adapters' entry helpers it calls, so
#: a sync graph's saves are plain blocking HTTP calls on its own threads instead of hops to an event loop thread.
INTEGRATION_TWINS = (
    Twin(
        INTEGRATIONS / "_entries.py",
        INTEGRATIONS / "_entries_sync.py",
        NAMES,
        _generated_docstring(
            "The blocking twin of ``_entries``: values inline or as blobs, removals, paging, over ``HandoffClient``.",
            "_entries.py",
        ),
    ),
    Twin(
        INTEGRATIONS / "_langgraph_async.py",
        INTEGRATIONS / "_langgraph_sync.py",
        {**NAMES, "_entries": "_entries_sync", "asyncio": "threading", "anext": "next"},
        _generated_docstring(
            "``SyncStore``: the LangGraph saver's operations over ``HandoffClient``, the twin of ``AsyncStore``.",
            "_langgraph_async.py",
        ),
        {"(one event loop)": "(any thread)"},
    ),
)
TWINS = (CLIENT, *INTEGRATION_TWINS)


class GeneratorError(Exception):
    """A source module is not in the shape the generator expects."""


def unasync_code(source: str, names: Mapping[str, str] = NAMES) -> str:
    """``source`` with its code made blocking by unasync, strings and comments untouched."""
    with tempfile.TemporaryDirectory() as scratch:
        # unasync maps paths (its rule: a file under ``_async/`` is written to the same name under ``_sync/``).
        async_file = Path(scratch, "_async", "client.py")
        async_file.parent.mkdir()
        async_file.write_text(source, encoding="utf-8")
        rule = unasync.Rule(fromdir="/_async/", todir="/_sync/", additional_replacements=dict(names))
        unasync.unasync_files([str(async_file)], rules=[rule])
        return Path(scratch, "_sync", "client.py").read_text(encoding="utf-8")


def _replace_module_docstring(code: str, docstring: str, source: Path) -> str:
    tree = ast.parse(code)
    if ast.get_docstring(tree, clean=False) is None:
        raise GeneratorError(f"{source.name} must start with its module docstring")
    rest = code.splitlines(keepends=True)[tree.body[0].end_lineno or 0 :]
    return docstring + "\n" + "".join(rest)


def _replace_prose(code: str, twin: Twin) -> str:
    for phrase, replacement in twin.prose.items():
        if phrase not in code:
            raise GeneratorError(f"PROSE entry {phrase!r} matches nothing in {twin.source.name}: update or remove it")
        code = code.replace(phrase, replacement)
    return code


def _ruff(code: str, target: Path, *args: str) -> str:
    # Named as the target, so the project's configuration and its rules for that path apply.
    command = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(target), "-"]
    done = subprocess.run(command, input=code, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GeneratorError(f"{' '.join(command[2:])} failed:\n{done.stderr}")
    return done.stdout


def render(source: str, twin: Twin = CLIENT) -> str:
    """The text ``twin.target`` must have for ``source``, the text of ``twin.source``."""
    code = unasync_code(source, twin.names)
    code = _replace_prose(_replace_module_docstring(code, twin.docstring, twin.source), twin)
    # Only the import order is fixed here (a renamed module can land in the wrong block); any other finding
    # comes from ``ruff check .`` on the committed file, to be fixed in the source.
    return _ruff(
        _ruff(code, twin.target, "check", "--fix", "--select", "I", "--quiet"), twin.target, "format", "--quiet"
    )


def generate(source: Path = SOURCE, target: Path = TARGET, *, check: bool = False, twin: Twin = CLIENT) -> bool:
    """Whether ``target`` was already up to date; unless ``check``, a stale ``target`` is rewritten."""
    expected = render(source.read_text(encoding="utf-8"), twin)
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if current == expected:
        return True
    if not check:
        target.write_text(expected, encoding="utf-8")
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handoff.client._unasync",
        description="Write the blocking twins (client/_sync.py, integrations/*_sync.py) from their async sources.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a twin is stale")
    check = parser.parse_args(argv).check
    stale = [twin.target for twin in TWINS if not generate(twin.source, twin.target, check=check, twin=twin)]
    for target in stale:
        sys.stderr.write(
            f"{target} is stale: run python -m handoff.client._unasync\n" if check else f"{target} rewritten\n"
        )
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
