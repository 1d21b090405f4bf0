"""One LangGraph graph of 200 steps on the handoff saver and on the official MongoDB saver (goal: <= 1.5x).

    .venv/bin/python scripts/bench_langgraph.py               # 200 steps, 3 rounds each side, alternating
    .venv/bin/python scripts/bench_langgraph.py --steps 500 --rounds 5

It starts a bundled mongod of its own and ``handoff serve`` (one worker) on it, then runs the same sync graph
(one node that appends to a list channel and loops until it has run ``--steps`` times) with
``HandoffCheckpointSaver`` (HTTP through ``handoff.client``) and with ``langgraph-checkpoint-mongodb``'s
``MongoDBSaver`` (PyMongo straight to the same mongod, its own database), each on a new thread per round.
It prints the time per step of each side (median over rounds) and the ratio handoff / official.
Needs the extras: ``pip install -e '.[dev,langgraph]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.mongodb import MongoDBSaver
from langgraph.graph import END, START, StateGraph
from pymongo import MongoClient

from _bench_common import bench_server, create_key, machine, median, serve
from handoff.integrations.langgraph import HandoffCheckpointSaver


class State(TypedDict):
    count: int
    log: Annotated[list[str], operator.add]


def _graph(saver: BaseCheckpointSaver[Any], steps: int) -> Any:
    def work(state: State) -> dict[str, Any]:
        return {"count": state["count"] + 1, "log": [f"step {state['count']}"]}

    def route(state: State) -> str:
        return END if state["count"] >= steps else "work"

    graph = StateGraph(State)
    graph.add_node("work", work)
    graph.add_edge(START, "work")
    graph.add_conditional_edges("work", route)
    return graph.compile(checkpointer=saver)


def _run(saver: BaseCheckpointSaver[Any], steps: int) -> float:
    """Seconds per step of one run on a new thread."""
    app = _graph(saver, steps)
    config = {"configurable": {"thread_id": uuid.uuid4().hex}, "recursion_limit": steps + 10}
    started = time.perf_counter()
    result = app.invoke({"count": 0, "log": []}, config)
    elapsed = time.perf_counter() - started
    assert result["count"] == steps, result["count"]
    return elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with bench_server("bench-langgraph") as mongod:
        key = asyncio.run(create_key(mongod.url))
        with serve(mongod.url) as service, MongoClient(mongod.url) as mongo:
            sides: dict[str, Callable[[], BaseCheckpointSaver[Any]]] = {
                "handoff": lambda: HandoffCheckpointSaver(base_url=service.base, api_key=key.secret),
                "official": lambda: MongoDBSaver(mongo, db_name="bench_langgraph_official"),
            }
            times: dict[str, list[float]] = {name: [] for name in sides}
            for make in sides.values():  # warm-up: connections, indexes, imports
                saver = make()
                _run(saver, 10)
                if isinstance(saver, HandoffCheckpointSaver):
                    saver.close()
            for _ in range(args.rounds):
                for name, make in sides.items():
                    saver = make()
                    times[name].append(_run(saver, args.steps))
                    if isinstance(saver, HandoffCheckpointSaver):
                        saver.close()
            print(machine(mongod.url))
            for name, samples in times.items():
                rounds = ", ".join(f"{sample * 1000:.2f}" for sample in samples)
                print(f"{name:>9}: {median(samples) * 1000:.2f} ms/step (rounds: {rounds})")
            ratio = median(times["handoff"]) / median(times["official"])
            print(f"ratio handoff/official: {ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
