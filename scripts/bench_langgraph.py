"""One LangGraph graph of 200 steps on the handoff saver and on the official MongoDB saver (goal: <= 1.5x).

    .venv/bin/python scripts/bench_langgraph.py               # 200 steps, 3 rounds each side, alternating
    .venv/bin/python scripts/bench_langgraph.py --steps 500 --rounds 5
    .venv/bin/python scripts/bench_langgraph.py --setting page_bytes=65536   # HANDOFF_PAGE_BYTES for the service

It starts a bundled mongod of its own and ``handoff serve`` (one worker) on it, then runs the same sync graph
(one node that appends to a list channel and loops until it has run ``--steps`` times) with
``HandoffCheckpointSaver`` (HTTP through ``handoff.client``) and with ``langgraph-checkpoint-mongodb``'s
``MongoDBSaver`` (PyMongo straight to the same mongod, its own database), each on a new thread per round.
It prints the time per step of each side (median over rounds) and the ratio handoff / official, and what a step
costs each side in round trips: HTTP requests to the service (its ``/metrics``, by route) and MongoDB
operations on the mongod (``serverStatus`` opcounters, every client of that mongod: the service's included),
and CPU milliseconds of this process (LangGraph, the saver, the client), the service and mongod.
Needs the extras: ``pip install -e '.[dev,langgraph]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import httpx
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.mongodb import MongoDBSaver
from langgraph.graph import END, START, StateGraph
from pymongo import MongoClient

from _bench_common import Service, bench_server, cpu_seconds, create_key, machine, median, serve
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


_REQUEST_LINE = re.compile(r"^handoff_http_requests_total\{(?P<labels>.*)\} (?P<value>[0-9.e+]+)$", re.M)


def _requests(base: str) -> Counter[str]:
    """HTTP requests the service answered so far, by ``METHOD route``."""
    counts: Counter[str] = Counter()
    for match in _REQUEST_LINE.finditer(httpx.get(f"{base}/metrics", timeout=10).text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        counts[f"{labels['method']} {labels['route']}"] += int(float(match["value"]))
    return counts


def _operations(mongo: MongoClient[Any]) -> Counter[str]:
    """MongoDB operations the mongod served so far, by kind (its opcounters)."""
    return Counter({k: v for k, v in mongo.admin.command("serverStatus")["opcounters"].items() if k != "command"})


def _per_step(before: Counter[str], after: Counter[str], steps: int) -> str:
    delta = after - before
    total = sum(delta.values()) / steps
    parts = ", ".join(f"{name} {count / steps:.2f}" for name, count in delta.most_common() if count / steps >= 0.01)
    return f"{total:.2f} ({parts})"


class _Meter:
    """What one run costs: HTTP requests, MongoDB operations, CPU of this process, the service and mongod."""

    def __init__(self, service: Service, mongod_pid: int, mongo: MongoClient[Any]) -> None:
        self.service, self.mongod_pid, self.mongo = service, mongod_pid, mongo
        self.requests, self.operations = _requests(service.base), _operations(mongo)
        self.cpu = self._cpu()

    def _cpu(self) -> tuple[float, float, float]:
        return time.process_time(), cpu_seconds(self.service.pid), cpu_seconds(self.mongod_pid)

    def per_step(self, steps: int) -> str:
        cpu = [(after - before) * 1000 / steps for before, after in zip(self.cpu, self._cpu(), strict=True)]
        operations = _per_step(self.operations, _operations(self.mongo), steps)
        requests = _per_step(self.requests, _requests(self.service.base), steps)
        return (
            f"HTTP requests {requests}; MongoDB operations {operations}; "
            f"CPU ms: this process {cpu[0]:.2f}, service {cpu[1]:.2f}, mongod {cpu[2]:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE", help="a HANDOFF_<NAME> for the service"
    )
    args = parser.parse_args()
    settings = dict(setting.split("=", 1) for setting in args.setting)
    with bench_server("bench-langgraph") as mongod:
        key = asyncio.run(create_key(mongod.url))
        with serve(mongod.url, **settings) as service, MongoClient(mongod.url) as mongo:
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
            costs: dict[str, str] = {}
            for round_number in range(args.rounds):
                for name, make in sides.items():
                    saver = make()
                    # Round trips and CPU from the first round (every round does the same work), read outside the
                    # timed run.
                    meter = _Meter(service, mongod.pid, mongo) if round_number == 0 else None
                    times[name].append(_run(saver, args.steps))
                    if meter is not None:
                        costs[name] = meter.per_step(args.steps)
                    if isinstance(saver, HandoffCheckpointSaver):
                        saver.close()
            print(machine(mongod.url))
            for name, samples in times.items():
                rounds = ", ".join(f"{sample * 1000:.2f}" for sample in samples)
                print(f"{name:>9}: {median(samples) * 1000:.2f} ms/step (rounds: {rounds})")
            for name, figures in costs.items():
                print(f"{name:>9} per step: {figures}")
            ratio = median(times["handoff"]) / median(times["official"])
            print(f"ratio handoff/official: {ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
