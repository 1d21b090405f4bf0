"""Where the replay context's time goes, stage by stage, at the answer size of a 1,000,000-entry log and at 10.

    .venv/bin/python scripts/bench_context_answer.py                 # 300 calls per stage
    .venv/bin/python scripts/bench_context_answer.py --entries 25000 --calls 1000

``scripts/bench_log_growth.py`` times the route over HTTP; this script splits the domain's part of it, in one
process, against a bundled mongod of its own. It grows two sessions through ``service.log_work_batch`` with the
growth benchmark's entries (``bench_log_growth.entry``: every 50th a checkpoint, every 97th an error, every 9th a
decision): one of 10 entries and one of ``--entries`` (25,000 by default: past 19,400 entries the newest 200 of
each list are all sealed, so its answer is the one at 1,000,000: ~620 entries, ~140 KB of JSON), plus 10
artifacts. Then it prints the median of each stage, the stages of one session interleaved call by call:

- ``reads``: ``queries.replay_view``, the session document and, beside it, the session's newest notables;
- ``newest notables doc``: of those, the read of the newest 200 checkpoints, decisions and errors in one
  document (``newest_notables.read``);
- ``three notable reads``: the same lists from the notable documents (``notables.newest``), what the reads do
  when that copy is out of step (and all they did before it);
- ``shape``: ``context_answers.replay_context`` over that view, the JSON-ready answer;
- ``encode``: Litestar's JSON encoder over the answer (what the route does with it);
- ``route's domain``: ``queries.replay_answer`` and the encoding, what the route does besides HTTP;
- ``as the models``: the same answer decoded, validated into ``ReplayContext`` and encoded from it, the
  per-entry model path the answer no longer takes (the MCP tools still validate it into the model).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from litestar.plugins.pydantic import PydanticInitPlugin
from litestar.serialization import encode_json, get_serializer

from bench_log_growth import entry
from handoff import clock
from handoff.config import Settings
from handoff.db import open_database
from handoff.localdb import start_mongod
from handoff.sessions import context_answers, newest_notables, notables, queries, service
from handoff.sessions.models import ArtifactAction, EntryType
from handoff.sessions.schemas import ArtifactCreate, ReplayContext, SessionCreate, WorkLogCreate
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal

WARM_UP = 20
SERIALIZER = get_serializer(PydanticInitPlugin.encoders())
Stage = Callable[[], Awaitable[object]]


async def grow(principal: Principal, size: int, settings: Settings) -> str:
    created = await service.create_session(principal, SessionCreate(agent_type="bench"), settings=settings)
    session_id = created.session.session_id
    for start in range(0, size, 1000):
        batch = [WorkLogCreate.model_validate(entry(n)) for n in range(start, min(size, start + 1000))]
        await service.log_work_batch(principal.workspace_id, session_id, batch, settings=settings)
    for n in range(10):
        artifact = ArtifactCreate(path=f"src/pkg{n}/module.py", action=ArtifactAction.MODIFIED)
        await service.record_artifact(principal.workspace_id, session_id, artifact, settings=settings)
    return session_id


def stages(workspace_id: str, session_id: str, view: dict[str, Any], answer: dict[str, Any]) -> dict[str, Stage]:
    async def newest_notables_read() -> None:
        await newest_notables.read(workspace_id, session_id)

    async def three_notable_reads() -> None:
        types = (EntryType.CHECKPOINT, EntryType.DECISION, EntryType.ERROR)
        await asyncio.gather(
            *(notables.newest(workspace_id, session_id, t.value, n=200, below=2**31, first=0) for t in types)
        )

    async def shape() -> None:
        context_answers.replay_context(view, None, clock.now())

    async def encode() -> None:
        encode_json(answer, SERIALIZER)

    async def domain() -> None:
        encode_json(await queries.replay_answer(workspace_id, session_id), SERIALIZER)

    async def as_models() -> None:
        encode_json(ReplayContext.model_validate(context_answers.decoded(answer)), SERIALIZER)

    return {
        "reads": lambda: queries.replay_view(workspace_id, session_id, with_lists=True),
        "newest notables doc": newest_notables_read,
        "three notable reads": three_notable_reads,
        "shape": shape,
        "encode": encode,
        "route's domain": domain,
        "as the models": as_models,
    }


async def medians(calls: dict[str, Stage], count: int) -> dict[str, float]:
    """Median ms of each stage, every stage once per pass (so all see the same load)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for number in range(WARM_UP + count):
        for name, call in calls.items():
            began = time.perf_counter()
            await call()
            if number >= WARM_UP:
                samples[name].append((time.perf_counter() - began) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


async def main(entries: int, calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-context-answer-") as tmp:
        mongod = start_mongod(Path(tmp))
        try:
            settings = Settings(mongodb_url=mongod.url, database="bench_context_answer", data_dir=Path(tmp))
            async with open_database(settings, url=mongod.url):
                workspace = await workspaces.create_workspace("bench")
                principal = Principal(workspace_id=workspace.workspace_id, api_key_id="key_bench")
                results: dict[int, dict[str, float]] = {}
                answers: dict[int, str] = {}
                for size in (10, entries):
                    session_id = await grow(principal, size, settings)
                    view = await queries.replay_view(workspace.workspace_id, session_id, with_lists=True)
                    answer = await queries.replay_answer(workspace.workspace_id, session_id)
                    data = context_answers.decoded(answer)
                    listed = sum(len(data[name]) for name in ("checkpoints", "decisions", "errors", "artifacts"))
                    size_of = len(encode_json(answer, SERIALIZER))
                    answers[size] = f"{listed + len(answer['recent_actions'])} entries, {size_of:,} bytes"
                    calls_of = stages(workspace.workspace_id, session_id, view, answer)
                    results[size] = await medians(calls_of, calls)
                print(f"medians of {calls} calls, ms; answers: " + "; ".join(f"{s:,}: {a}" for s, a in answers.items()))
                print(f"{'stage':<22}{10:>10}{entries:>12,}{'difference':>12}")
                for name in results[10]:
                    small, large = results[10][name], results[entries][name]
                    print(f"{name:<22}{small:>10.3f}{large:>12.3f}{large - small:>12.3f}")
        finally:
            mongod.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=25_000)
    parser.add_argument("--calls", type=int, default=300)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.entries, arguments.calls)))
