"""A token bucket per key, shared by every process that maps the same file.

Why a file in shared memory and not MongoDB or a library's store: the check runs on every request, so it must
cost a small fraction of an append (see ``scripts/bench_ratelimit.py`` and ``docs/benchmarks.md``). A round
trip to MongoDB costs about as much as the append itself; Litestar's ``RateLimitMiddleware`` keeps fixed windows
(no burst) in a store whose shared variants are Redis or files rewritten on every hit, with a lock that is only
per process; the ``limits`` library shares state only through Redis, Memcached, MongoDB or etcd. A page-cache
backed ``mmap`` that the workers of one ``handoff serve`` open together costs a few microseconds.

Each key owns one slot: a 16-byte digest of the key and its GCRA "theoretical arrival time" (TAT) on the
system-wide monotonic clock. GCRA (the generic cell rate algorithm) is a token bucket kept as one number: a
request is admitted when, after adding one emission interval ``1/rate`` to ``max(TAT, now)``, the TAT is at most
``burst`` intervals ahead of now. A slot whose TAT has passed is exactly a full bucket, so it is free for any key:
the table never needs cleaning. A key's slot is found by open addressing in a window of :data:`PROBES`
consecutive slots that a POSIX byte-range lock (``fcntl.lockf``) guards, so two processes updating one key
serialize, while keys in other windows go on in parallel. Within one process the event loop runs each check to
completion (there is no ``await`` inside), so the lock is only ever contended across processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: One slot: the key's digest and its theoretical arrival time, in seconds of ``time.monotonic()``.
SLOT = struct.Struct("<16sd")
#: Keys the table holds while their buckets are not full (a full bucket frees its slot): 1.5 MiB of memory.
SLOTS = 1 << 16
#: Consecutive slots a key may land in; with fewer live keys than slots a window almost never fills up.
PROBES = 8
_WINDOWS = SLOTS - PROBES + 1  # windows never wrap around the end, so one lock covers each


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """``rate`` requests per second sustained, up to ``burst`` at once from a full bucket."""

    rate: float
    burst: int

    @property
    def interval(self) -> float:
        """Seconds one request uses up: the emission interval."""
        return 1.0 / self.rate


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request, with what the ``RateLimit-*`` headers report."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the bucket is full again (every unit of the burst available).
    reset_after: float
    #: Seconds until one more request would be admitted (0 when this one was).
    retry_after: float


def key_digest(key: str) -> bytes:
    """The 16 bytes a key is known by in the table (the key itself is never stored)."""
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


class SharedRateTable:
    """The buckets of all keys, in a file that several processes map; see the module docstring."""

    def __init__(self, path: Path, policy: RatePolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.policy = policy
        self._clock = clock
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(self._fd).st_size < SLOTS * SLOT.size:
                os.ftruncate(self._fd, SLOTS * SLOT.size)  # zeros: every slot free (TAT 0 is in the past)
            self._map = mmap.mmap(self._fd, SLOTS * SLOT.size)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        """Unmap and close the file (it stays for the other processes that map it)."""
        self._map.close()
        os.close(self._fd)

    def hit(self, key: str) -> Decision:
        """Count one request of ``key`` and say whether it is admitted."""
        digest = key_digest(key)
        window = int.from_bytes(digest[:8], "little") % _WINDOWS
        start, length = window * SLOT.size, PROBES * SLOT.size
        fcntl.lockf(self._fd, fcntl.LOCK_EX, length, start)
        try:
            now = self._clock()
            slot, tat = self._find(digest, start, now)
            if slot is None:  # every slot of the window is another key's live bucket: admit, do not count
                return Decision(True, self.policy.burst, self.policy.burst, 0.0, 0.0)
            decision, new_tat = self._decide(tat, now)
            if decision.allowed:
                SLOT.pack_into(self._map, slot, digest, new_tat)
            return decision
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, length, start)

    def _find(self, digest: bytes, start: int, now: float) -> tuple[int | None, float]:
        """The offset of the key's slot and its TAT, else the first free slot of the window (TAT ``now``)."""
        free: int | None = None
        for offset in range(start, start + PROBES * SLOT.size, SLOT.size):
            owner, tat = SLOT.unpack_from(self._map, offset)
            if owner == digest:
                return offset, tat
            if free is None and tat <= now:
                free = offset
        return free, now

    def _decide(self, tat: float, now: float) -> tuple[Decision, float]:
        policy = self.policy
        new_tat = max(tat, now) + policy.interval
        ahead = new_tat - now  # how far the key's use runs ahead of the clock, this request included
        capacity = policy.burst * policy.interval
        if ahead > capacity + 1e-9:
            wait = ahead - capacity
            return Decision(False, policy.burst, 0, max(tat - now, 0.0), wait), tat
        remaining = math.floor((capacity - ahead) / policy.interval + 1e-9)
        return Decision(True, policy.burst, remaining, ahead, 0.0), new_tat


#: Memory, never written to a disk; ``mkstemp`` makes a file there that only this user can open.
SHARED_MEMORY = Path("/dev/shm")  # noqa: S108


def new_table_file() -> Path:
    """A new, empty, private table file: in :data:`SHARED_MEMORY` where there is one, else the temporary directory."""
    usable = SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK)
    fd, name = tempfile.mkstemp(prefix="handoff-ratelimit-", dir=SHARED_MEMORY if usable else None)
    os.close(fd)  # SharedRateTable opens it by its path
    return Path(name)


@contextmanager
def table_file_for_workers() -> Iterator[Path]:
    """A new table file for the workers of one server to share, removed when the server stops."""
    path = new_table_file()
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
