"""How a long-running process's garbage collector treats its heap.

Under load the API holds hundreds of submissions at once, each a few hundred young container
objects alive for a fraction of a second. With Python's defaults (a young collection every 700
net allocations, an older one every tenth) those objects are scanned again and again while they
wait for their commit, and every full collection walks the whole heap of imported modules too:
in `make bench BENCH_ARGS=overload` the collector took a quarter to a third of the API's CPU.
A full collection stops every thread of the process (it holds the interpreter), so it also
lands whole in the latency of each task that process is handling at that moment.

`settle_the_heap` runs once a server process (API, worker, dispatcher, projector) has started:
it collects what start-up left behind and freezes the rest (modules, the app, settings, a
worker's model: alive for the process's life) out of the collector's reach, and collects young
objects less often (`gc_young_threshold`), so that most requests' objects are freed by reference
counting before a collection sees them. Cyclic garbage waits at most that many allocations
longer. Each collection's pause is observed in `autoglm_gc_pause_seconds{generation}`.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

from mcp.settings import Settings

GC_PAUSE_SECONDS = Histogram(
    "autoglm_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector (every thread waits), by generation",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)


class _Watch:
    """gc.callbacks entry: the time from each collection's start to its stop."""

    def __init__(self) -> None:
        self.began = 0.0
        self.pauses = [GC_PAUSE_SECONDS.labels(str(generation)) for generation in range(3)]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.began = time.perf_counter()
        else:
            self.pauses[info["generation"]].observe(time.perf_counter() - self.began)


def watch_collections() -> None:
    """Observe every collection's pause from now on (once per process; the series appear then)."""
    if not any(isinstance(callback, _Watch) for callback in gc.callbacks):
        gc.callbacks.append(_Watch())


def settle_the_heap(settings: Settings) -> None:
    watch_collections()
    if settings.gc_freeze_after_start:
        gc.collect()
        gc.freeze()
    if settings.gc_young_threshold is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(settings.gc_young_threshold, middle, old)
