"""Exact resume of event streams across processes: on another worker of ``handoff serve --workers 2`` and across a
restart of the service. (Across a replica-set step-down: ``test_events_failover``.)

The service is a real process (``tests.serving``). Which worker holds a stream is read from ``/proc``: the worker
owning the server's end of the client's TCP connection. Every check is on what a client receives: the events
after the ``Last-Event-ID``, each once, in the order written, with the same ids a stream that never left got.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS
from tests.factories import Tenant
from tests.serving import Served, serve

pytestmark = pytest.mark.timeout(180)

FRESH = httpx.Limits(max_keepalive_connections=0)  # each stream a connection of its own, so any worker may take it


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: dict[str, Any]


class Stream:
    """One open event stream (blocking), parsed as an EventSource would."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.comments: list[str] = []

    def events(self, count: int) -> list[Event]:
        found: list[Event] = []
        fields: dict[str, str] = {}
        while len(found) < count:
            line = next(self.lines)
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif "event" in fields:
                assert fields["event"] != "error", fields
                found.append(Event(fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
        return found

    def worker(self, workers: list[int]) -> int:
        """The pid of the worker holding the server's end of this stream's connection."""
        sock = self.response.extensions["network_stream"].get_extra_info("socket")
        remote = f"{sock.getsockname()[0]}:{sock.getsockname()[1]}"
        inodes = {fields[9] for fields in _tcp() if fields[2] == _hex_address(remote)}
        for pid in workers:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = str(fd.readlink())
                except FileNotFoundError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return pid
        raise AssertionError(f"no worker of {workers} holds the connection from {remote}")


def _tcp() -> Iterator[list[str]]:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        yield line.split()


def _hex_address(address: str) -> str:
    """``127.0.0.1:5000`` as ``/proc/net/tcp`` writes it (little-endian address, big-endian port)."""
    host, _, port = address.partition(":")
    return "".join(f"{int(part):02X}" for part in reversed(host.split("."))) + f":{int(port):04X}"


@contextmanager
def stream(http: httpx.Client, tenant: Tenant, last_event_id: str | None = None) -> Iterator[Stream]:
    headers = {**tenant.headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    with http.stream("GET", "/v1/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        opened = Stream(response)
        assert next(opened.lines) == ": subscribed"  # live from here on
        yield opened


def call(http: httpx.Client, tenant: Tenant, method: str, path: str, body: Any = None) -> Any:
    response = http.request(method, f"/v1/sessions{path}", headers=tenant.headers, json=body)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def comparable(events: list[Event]) -> list[tuple[str, str, dict[str, Any]]]:
    """What two workers must agree on: ids, types and data (the Session body is each worker's own read)."""
    return [(e.id, e.event, {k: v for k, v in e.data.items() if k != "session"}) for e in events]


@pytest.fixture(scope="module")
def served(mongod: MongodProcess, database: MongoDatabase) -> Iterator[Served]:
    with serve(mongod.url, database.name, workers=2, log_level="WARNING") as service:
        yield service


def test_last_event_id_resumes_exactly_on_another_worker(served: Served, tenant: Tenant) -> None:
    with httpx.Client(base_url=served.base, limits=FRESH, timeout=30) as http, stream(http, tenant) as witness:
        with stream(http, tenant) as first:
            sid = call(http, tenant, "POST", "")["session_id"]
            call(http, tenant, "POST", f"/{sid}/work-log/batch", {"entries": [{"message": str(i)} for i in range(3)]})
            seen = first.events(2)  # created and the batch's first entry: the cut is inside the batch
            where = first.worker(served.workers())
        call(http, tenant, "POST", f"/{sid}/actions", {"action": "while away"})
        call(http, tenant, "POST", f"/{sid}/handoff", {"summary": "over to you"})
        everything = witness.events(7)
        for _ in range(50):  # reconnect until the kernel hands the connection to the other worker
            with stream(http, tenant, last_event_id=seen[-1].id) as resumed:
                if resumed.worker(served.workers()) == where:
                    continue
                missed = resumed.events(5)
                call(http, tenant, "POST", f"/{sid}/resume")
                after = resumed.events(1)
                break
        else:
            pytest.fail(f"50 connections in a row went to worker {where}")
        assert witness.events(1)[0].id == after[0].id
    assert comparable(everything[:2]) == comparable(seen)
    assert comparable(missed) == comparable(everything[2:])
    assert [m.event for m in missed] == [
        "work_log.appended",
        "work_log.appended",
        "work_log.appended",
        "session.updated",
        "handoff.waiting",
    ]
    assert [m.data["entry"].get("message") or m.data["entry"]["action"] for m in missed[:3]] == ["1", "2", "while away"]
    assert missed[3].data["session"]["status"] == "paused"  # the other worker read the body itself
    assert (after[0].event, after[0].data["changes"]["status"]) == ("session.updated", "active")


def test_last_event_id_resumes_exactly_after_a_restart(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    with (
        serve(mongod.url, database.name, log_level="WARNING") as before,
        httpx.Client(base_url=before.base, timeout=30) as http,
    ):
        with stream(http, tenant) as first:
            sid = call(http, tenant, "POST", "")["session_id"]
            call(http, tenant, "POST", f"/{sid}/actions", {"action": "before"})
            seen = first.events(2)
        call(http, tenant, "POST", f"/{sid}/actions", {"action": "missed before the restart"})
        with stream(http, tenant) as cut:  # a stream the shutdown ends, with a hint to reconnect
            before.process.terminate()
            rest = list(cut.lines)
    assert f"retry: {RETRY_AFTER_SHUTDOWN_MS}" in rest, rest
    with (
        serve(mongod.url, database.name, log_level="WARNING") as after,
        httpx.Client(base_url=after.base, timeout=30) as http,
    ):
        call(http, tenant, "POST", f"/{sid}/actions", {"action": "missed after the restart"})
        with stream(http, tenant, last_event_id=seen[-1].id) as resumed:
            missed = resumed.events(2)
            call(http, tenant, "POST", f"/{sid}/actions", {"action": "live again"})
            live = resumed.events(1)
    actions = [e.data["entry"]["action"] for e in [*missed, *live]]
    assert actions == ["missed before the restart", "missed after the restart", "live again"]
    ids = [e.id for e in [*seen, *missed, *live]]
    assert len(set(ids)) == len(ids)
