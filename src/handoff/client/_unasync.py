"""Writes the blocking client, ``_sync.py``, from the async one, ``_async.py``: each route is written once.

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
from collections.abc import Sequence
from pathlib import Path

import unasync  # type: ignore[import-untyped]

HERE = Path(__file__).parent
SOURCE = HERE / "_async.py"
TARGET = HERE / "_sync.py"

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


class GeneratorError(Exception):
    """``_async.py`` is not in the shape the generator expects."""


def unasync_code(source: str) -> str:
    """``source`` with its code made blocking by unasync, strings and comments untouched."""
    with tempfile.TemporaryDirectory() as scratch:
        # unasync maps paths (its rule: a file under ``_async/`` is written to the same name under ``_sync/``).
        async_file = Path(scratch, "_async", "client.py")
        async_file.parent.mkdir()
        async_file.write_text(source, encoding="utf-8")
        rule = unasync.Rule(fromdir="/_async/", todir="/_sync/", additional_replacements=NAMES)
        unasync.unasync_files([str(async_file)], rules=[rule])
        return Path(scratch, "_sync", "client.py").read_text(encoding="utf-8")


def _replace_module_docstring(code: str, docstring: str) -> str:
    tree = ast.parse(code)
    if ast.get_docstring(tree, clean=False) is None:
        raise GeneratorError("_async.py must start with its module docstring")
    rest = code.splitlines(keepends=True)[tree.body[0].end_lineno or 0 :]
    return docstring + "\n" + "".join(rest)


def _replace_prose(code: str) -> str:
    for phrase, replacement in PROSE.items():
        if phrase not in code:
            raise GeneratorError(f"PROSE entry {phrase!r} matches nothing in _async.py: update or remove it")
        code = code.replace(phrase, replacement)
    return code


def _ruff(code: str, *args: str) -> str:
    # Named as the target, so the project's configuration and its rules for that path apply.
    command = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(TARGET), "-"]
    done = subprocess.run(command, input=code, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GeneratorError(f"{' '.join(command[2:])} failed:\n{done.stderr}")
    return done.stdout


def render(source: str) -> str:
    """The text ``_sync.py`` must have for ``source``, the text of ``_async.py``."""
    code = _replace_prose(_replace_module_docstring(unasync_code(source), SYNC_DOCSTRING))
    # Only the import order is fixed here (a renamed module can land in the wrong block); any other finding
    # comes from ``ruff check .`` on the committed file, to be fixed in _async.py.
    return _ruff(_ruff(code, "check", "--fix", "--select", "I", "--quiet"), "format", "--quiet")


def generate(source: Path = SOURCE, target: Path = TARGET, *, check: bool = False) -> bool:
    """Whether ``target`` was already up to date; unless ``check``, a stale ``target`` is rewritten."""
    expected = render(source.read_text(encoding="utf-8"))
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if current == expected:
        return True
    if not check:
        target.write_text(expected, encoding="utf-8")
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handoff.client._unasync", description="Write client/_sync.py from client/_async.py."
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when _sync.py is stale")
    check = parser.parse_args(argv).check
    if generate(check=check):
        return 0
    if check:
        sys.stderr.write(f"{TARGET} is stale: run python -m handoff.client._unasync\n")
        return 1
    sys.stderr.write(f"{TARGET} rewritten\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
