"""The blocking client is generated from the async one (``python -m handoff.client._unasync``), never edited.

The first test is the CI check: it fails as soon as ``_sync.py`` differs from what the generator makes of
``_async.py``, e.g. a method added to one client only, and likewise for the sync LangGraph saver's twins. The
others pin what the generator does with the async constructs the clients use now or will use (streams, event
iterators), and that it refuses to guess.
"""

from __future__ import annotations

import difflib
import shutil
import textwrap
from pathlib import Path

import pytest

from handoff.client import _unasync
from handoff.client._unasync import SOURCE, TARGET, TWINS, GeneratorError, Twin, generate, render, unasync_code


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.target.name)
def test_every_blocking_twin_is_the_one_generated_from_its_async_source(twin: Twin) -> None:
    expected = render(twin.source.read_text(encoding="utf-8"), twin)
    committed = twin.target.read_text(encoding="utf-8")
    name = twin.target.name
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            f"{name} (committed)",
            f"{name} (generated)",
        )
    )
    assert not diff, f"{name} is stale: run python -m handoff.client._unasync\n{diff}"


ASYNC_SAMPLE = '''\
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx


class Chunks:
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"x"


class AsyncHandoffClient:
    """Use it as ``async with``; an await in a docstring stays (AsyncClient too)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(transport=transport or httpx.AsyncHTTPTransport(retries=0))

    async def __aenter__(self) -> "AsyncHandoffClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @asynccontextmanager
    async def _stream(self, request: httpx.Request) -> AsyncIterator[httpx.Response]:
        response = await self._http.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def upload(self, stream: httpx.AsyncByteStream) -> bytes:
        await anyio.sleep(0.5)  # await in a comment stays
        return (await self._http.post("/blobs", content=stream)).content

    async def download(self, into: list[bytes]) -> None:
        async with self._stream(self._http.build_request("GET", "/blobs/1")) as response:
            async for chunk in response.aiter_bytes():
                into.append(chunk)
            await response.aread()

    async def events(self) -> AsyncIterator[str]:
        async with self._stream(self._http.build_request("GET", "/events")) as response:
            async for line in response.aiter_lines():
                if line:
                    yield line
'''

SYNC_SAMPLE = '''\
from collections.abc import Iterator
from contextlib import contextmanager

import time
import httpx


class Chunks:
    def __iter__(self) -> Iterator[bytes]:
        yield b"x"


class HandoffClient:
    """Use it as ``async with``; an await in a docstring stays (AsyncClient too)."""

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(transport=transport or httpx.HTTPTransport(retries=0))

    def __enter__(self) -> "HandoffClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @contextmanager
    def _stream(self, request: httpx.Request) -> Iterator[httpx.Response]:
        response = self._http.send(request, stream=True)
        try:
            yield response
        finally:
            response.close()

    def upload(self, stream: httpx.SyncByteStream) -> bytes:
        time.sleep(0.5)  # await in a comment stays
        return (self._http.post("/blobs", content=stream)).content

    def download(self, into: list[bytes]) -> None:
        with self._stream(self._http.build_request("GET", "/blobs/1")) as response:
            for chunk in response.iter_bytes():
                into.append(chunk)
            response.read()

    def events(self) -> Iterator[str]:
        with self._stream(self._http.build_request("GET", "/events")) as response:
            for line in response.iter_lines():
                if line:
                    yield line
'''


def test_unasync_makes_every_async_construct_blocking_and_leaves_strings_and_comments() -> None:
    assert unasync_code(ASYNC_SAMPLE) == SYNC_SAMPLE


def test_the_generated_module_gets_its_own_docstring_and_sorted_imports() -> None:
    source = '"""Async words."""\n\nimport anyio\nimport httpx\n\n\nclass AsyncHandoffClient:\n'
    source += '    """An async client: ``async with``, :meth:`aclose`."""\n\n    async def aclose(self) -> None:\n'
    source += "        await anyio.sleep(0)\n"
    expected = _unasync.SYNC_DOCSTRING + textwrap.dedent('''

        import time

        import httpx


        class HandoffClient:
            """A blocking client: ``with``, :meth:`close`."""

            def close(self) -> None:
                time.sleep(0)
    ''')
    assert render(source) == expected


def test_a_stale_copy_fails_the_check_untouched_and_is_rewritten_without_it(tmp_path: Path) -> None:
    source, target = tmp_path / "_async.py", tmp_path / "_sync.py"
    shutil.copy(SOURCE, source)
    target.write_text("# edited by hand\n", encoding="utf-8")

    assert generate(source, target, check=True) is False
    assert target.read_text(encoding="utf-8") == "# edited by hand\n"

    assert generate(source, target) is False
    assert target.read_text(encoding="utf-8") == TARGET.read_text(encoding="utf-8")
    assert generate(source, target, check=True) is True


def test_async_wording_the_table_no_longer_matches_fails_instead_of_reaching_the_sync_client() -> None:
    source = SOURCE.read_text(encoding="utf-8").replace("An async client", "A client")
    with pytest.raises(GeneratorError, match="'An async client' matches nothing"):
        render(source)


def test_a_source_without_its_module_docstring_is_refused() -> None:
    with pytest.raises(GeneratorError, match="module docstring"):
        render("import httpx\n")
