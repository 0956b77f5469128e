"""How a long-running process's garbage collector treats its heap.

Under load the API holds hundreds of submissions at once, each a few hundred young container
objects alive for a fraction of a second. With Python's defaults (a young collection every 700
net allocations, an older one every tenth) those objects are scanned again and again while they
wait for their commit, and every full collection walks the whole heap of imported modules too:
in `make bench BENCH_ARGS=overload` the collector took a quarter to a third of the API's CPU.

`settle_the_heap` runs once the process has started: it collects what start-up left behind and
freezes the rest (modules, the app, settings: alive for the process's life) out of the
collector's reach, and collects young objects less often (`gc_young_threshold`), so that most
requests' objects are freed by reference counting before a collection sees them. Cyclic garbage
waits at most that many allocations longer.
"""

from __future__ import annotations

import gc

from mcp.settings import Settings


def settle_the_heap(settings: Settings) -> None:
    if settings.gc_freeze_after_start:
        gc.collect()
        gc.freeze()
    if settings.gc_young_threshold is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(settings.gc_young_threshold, middle, old)
