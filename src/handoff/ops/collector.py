"""The cyclic garbage collector set for a long-running worker: what a served process calls once, before it serves.

With CPython's defaults a worker under load spends a tenth of its CPU in the collector (measured with
``gc.callbacks`` in the events benchmark, ``docs/benchmarks.md``), and more with many open event streams, for two
reasons that have nothing to do with garbage:

* every full collection walks every object alive, most of them made at import (modules, pydantic and Litestar's
  schemas: ~170,000 objects, ~70 ms a walk); :func:`gc.freeze` moves those out of the collector's sight once the app
  is built;
* a young collection runs after every 700 allocations more than deallocations, which the requests and streams in
  flight at any moment reach by themselves (each collection then finds nothing: objects in flight are not garbage)
  and which promote them, so that full collections come around often; :data:`GEN0_THRESHOLD` is far above what is
  in flight, so collections follow real garbage (reference cycles) rather than concurrency.

Garbage is still collected: a cycle counts as allocated until a collection frees it, so at most about
:data:`GEN0_THRESHOLD` container objects of cycles wait for one. Not called by the tests' in-process apps (a frozen
object is never collected, and the tests build hundreds of apps in one process).
"""

from __future__ import annotations

import gc

#: Allocations (net of deallocations) of container objects between two young collections (CPython's default: 700).
GEN0_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what exists now (collected first, so that no garbage of the startup is frozen with it) and raise the
    young generation's threshold, keeping the older generations' ones."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
