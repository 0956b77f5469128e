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

It also starts `heap-trim`, a thread that asks glibc every `heap_trim_interval_s` to give back
the memory its arenas hold free (`malloc_trim(0)`). glibc keeps what a burst allocated and freed
(the arenas' free chunks, and each thread's arena) for the next burst: in the soak, a process's
glibc memory went 23 -> 34 MB from the system with the same 20 MB in use, and kept it; the RSS
of every process then grew in such steps. What a trim gives back is counted in
`autoglm_heap_trimmed_bytes_total`. Without glibc (musl, macOS) the thread is not started.

Before each trim it runs a full collection (`heap_trim_full_collection`). That is when CPython
empties its free lists: up to 2,000 freed tuples of each length from 1 to 20, and the lists,
dicts and floats, kept for reuse (4.7 MiB at most for the tuples alone). A process that seldom
collects fully (the frozen heap, the raised young threshold) otherwise fills them over its first
minutes, from bursts of long tuples such as a Redis pipeline's commands, and keeps those blocks
for its whole life: in the soak, the API's RSS grew that way for three minutes before it
flattened. The start-up heap is frozen, so the collection walks only what was made since.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from mcp.settings import Settings

GC_PAUSE_SECONDS = Histogram(
    "autoglm_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector (every thread waits), by generation",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)

HEAP_TRIMMED = Counter(
    "autoglm_heap_trimmed_bytes_total",
    "Resident memory given back to the system by malloc_trim (RSS before minus after)",
)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_trimmer: threading.Thread | None = None


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def trim_once(trim: Callable[[int], int]) -> int:
    """One `malloc_trim(0)`; the resident bytes it gave back (0 where /proc cannot tell)."""
    before = _resident_bytes()
    trim(0)
    after = _resident_bytes()
    released = max(0, before - after) if before is not None and after is not None else 0
    HEAP_TRIMMED.inc(released)
    return released


def tidy(trim: Callable[[int], int], collect: bool) -> int:
    """One turn of `heap-trim`: a full collection when `collect` (it empties the free lists),
    then a trim; the resident bytes given back."""
    if collect:
        gc.collect()
    return trim_once(trim)


def start_trimming(interval_s: float | None, collect: bool = False) -> threading.Thread | None:
    """Start the `heap-trim` thread (once per process), each trim after a full collection when
    `collect`; None when off or without glibc."""
    global _trimmer
    if interval_s is None:
        return None
    if _trimmer is not None:
        return _trimmer
    trim = _malloc_trim()
    if trim is None:
        return None

    def run() -> None:
        while True:
            time.sleep(interval_s)
            tidy(trim, collect)

    _trimmer = threading.Thread(target=run, name="heap-trim", daemon=True)
    _trimmer.start()
    return _trimmer


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
    start_trimming(settings.heap_trim_interval_s, settings.heap_trim_full_collection)
