"""The paged log's reads, this code against another commit's, interleaved call by call in one process.

    .venv/bin/python scripts/bench_log_reads.py                        # against HEAD~1, at 10 and 100,000 entries
    .venv/bin/python scripts/bench_log_reads.py --baseline 410f45b --sizes 10 100000 1000000

``scripts/bench_log_growth.py`` times the routes over HTTP, one side after the other; on a shared machine the
drift between the two sides can be larger than a change to one read. This script measures only the domain
reads (``handoff.sessions.queries``: the replay context's JSON-ready answer, no HTTP, no encoding), and
alternates the two versions of ``handoff.sessions.log_reads`` call by call on the same session, so both see the
same load: the baseline's module is loaded from ``git show <commit>:src/handoff/sessions/log_reads.py`` beside
this checkout's, and ``queries.log_reads`` is pointed at one or the other before each call.

It starts a bundled mongod of its own, grows one session per size through ``service.log_work_batch`` (entries of
~150 bytes; every 50th a checkpoint, every 61st a decision, every 97th an error, like the log-growth benchmark),
and prints the median of each read for both versions and their ratio: ``replay-context`` (five lists of up to 200,
spread over many sealed pages) and a work-log page of 10 at 90 % of the log; and, under them, the size of the
replay context's answer and the time to encode it as JSON alone (what no read can take away).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from types import ModuleType

from litestar.plugins.pydantic import PydanticInitPlugin
from litestar.serialization import encode_json, get_serializer

from handoff.config import Settings
from handoff.db import open_database
from handoff.localdb import start_mongod
from handoff.sessions import log_reads, queries, service
from handoff.sessions.schemas import SessionCreate, WorkLogCreate
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal

REPOSITORY = Path(__file__).resolve().parents[1]
WARM_UP = 20


def baseline_module(commit: str) -> ModuleType:
    """``handoff.sessions.log_reads`` as it was at ``commit``, importable beside today's."""
    source = subprocess.run(
        ["git", "show", f"{commit}:src/handoff/sessions/log_reads.py"],
        cwd=REPOSITORY,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="bench-log-reads-")) / "log_reads_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("log_reads_baseline", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def entry_type(number: int) -> str:
    if number % 50 == 0:
        return "checkpoint"
    if number % 61 == 0:
        return "decision"
    return "error" if number % 97 == 0 else "info"


async def grow(workspace_id: str, size: int, settings: Settings) -> str:
    principal = Principal(workspace_id=workspace_id, api_key_id="key_bench")
    created = await service.create_session(principal, SessionCreate(agent_type="bench"), settings=settings)
    session_id = created.session.session_id
    for start in range(0, size, 1000):
        batch = [WorkLogCreate(message="m" * 150, type=entry_type(n)) for n in range(start, min(size, start + 1000))]
        await service.log_work_batch(workspace_id, session_id, batch, settings=settings)
    return session_id


async def interleaved(call: Callable[[], Awaitable[object]], versions: dict[str, ModuleType], calls: int) -> dict:
    """Median seconds of ``call`` under each version of the module, alternating which goes first."""
    times: dict[str, list[float]] = {name: [] for name in versions}
    names = list(versions)
    for number in range(WARM_UP + calls):
        for name in names if number % 2 else names[::-1]:
            queries.log_reads = versions[name]  # type: ignore[attr-defined]
            began = time.perf_counter()
            await call()
            if number >= WARM_UP:
                times[name].append(time.perf_counter() - began)
    queries.log_reads = log_reads  # type: ignore[attr-defined]
    return {name: statistics.median(samples) for name, samples in times.items()}


def reads(workspace_id: str, session_id: str, size: int) -> dict[str, Callable[[], Awaitable[object]]]:
    offset = size * 9 // 10
    return {
        "replay-context": partial(queries.replay_answer, workspace_id, session_id),
        f"page at {offset:,}": partial(
            queries.work_log_page, workspace_id, session_id, entry_type=None, offset=offset, limit=10, order="asc"
        ),
    }


async def answer_cost(workspace_id: str, session_id: str, size: int, calls: int) -> str:
    """The replay context's answer alone: its entries, its JSON bytes, and the median time to encode it (what the
    route has Litestar do after the read: msgspec over the JSON-ready data), whatever reads produced it."""
    answer = await queries.replay_answer(workspace_id, session_id)
    lists = ("checkpoints", "decisions", "errors", "artifacts", "recent_actions")
    entries = sum(len(answer[name]) for name in lists)
    serializer = get_serializer(PydanticInitPlugin.encoders())
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        body = encode_json(answer, serializer)
        samples.append(time.perf_counter() - began)
    encode = statistics.median(samples) * 1e3
    return f"{size:>10,} {'(its answer: encode)':<24} {entries:>5} entries, {len(body):,} bytes, {encode:.3f} ms"


async def open_page_answer(workspace_id: str, settings: Settings, calls: int) -> str:
    """The replay context of the answer size of a long log (200 checkpoints, decisions and errors, 20 others) on a
    session whose whole log is its open page: one read of the session, no sealed read at all, so what it costs is
    the answer's own cost (the read of its entries, the views, no page or notable document)."""
    roomy = settings.model_copy(update={"page_entries": 10_000, "page_bytes": 64 * 2**20})
    principal = Principal(workspace_id=workspace_id, api_key_id="key_bench")
    created = await service.create_session(principal, SessionCreate(agent_type="bench"), settings=roomy)
    session_id = created.session.session_id
    types = [*(["checkpoint", "decision", "error"] * 200), *(["info"] * 20)]
    batch = [WorkLogCreate(message="m" * 150, type=kind) for kind in types]
    await service.log_work_batch(workspace_id, session_id, batch, settings=roomy)
    call = partial(queries.replay_answer, workspace_id, session_id)
    medians = await interleaved(call, {"this code": log_reads}, calls)
    label = "(620 in the open page)"
    return f"{len(types):>10,} {label:<24} {'':>9} {medians['this code'] * 1e3:>10.3f}   the answer's own cost"


async def main(baseline: str, sizes: list[int], calls: int) -> None:
    versions = {"baseline": baseline_module(baseline), "this code": log_reads}
    with tempfile.TemporaryDirectory(prefix="bench-log-reads-") as tmp:
        mongod = start_mongod(Path(tmp))
        try:
            settings = Settings(mongodb_url=mongod.url, database="bench_log_reads", data_dir=Path(tmp))
            async with open_database(settings, url=mongod.url):
                workspace = await workspaces.create_workspace("bench")
                print(f"baseline {baseline}; medians of {calls} calls each, interleaved; ms")
                print(f"{'entries':>10} {'read':<24} {'baseline':>9} {'this code':>10} {'ratio':>6}")
                for size in sizes:
                    session_id = await grow(workspace.workspace_id, size, settings)
                    for label, call in reads(workspace.workspace_id, session_id, size).items():
                        medians = await interleaved(call, versions, calls)
                        old, new = medians["baseline"] * 1e3, medians["this code"] * 1e3
                        print(f"{size:>10,} {label:<24} {old:>9.3f} {new:>10.3f} {new / old:>6.2f}")
                    print(await answer_cost(workspace.workspace_id, session_id, size, calls))
                print(await open_page_answer(workspace.workspace_id, settings, calls))
        finally:
            mongod.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="HEAD~1", help="commit whose log_reads.py to compare with")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100_000])
    parser.add_argument("--calls", type=int, default=300)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.baseline, arguments.sizes, arguments.calls)))
