"""A server process's collector once started: start-up's heap frozen, young collections rarer,
each collection's pause observed; glibc asked now and then to give back what it holds free, after
a full collection that empties CPython's free lists."""

from __future__ import annotations

import gc
import re
import sys

import pytest
from prometheus_client import REGISTRY

from mcp.heap import _malloc_trim, settle_the_heap, start_trimming, tidy, trim_once
from mcp.settings import Settings


def test_settling_freezes_the_heap_and_sets_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        settle_the_heap(
            Settings(
                gc_freeze_after_start=True, gc_young_threshold=12_345, heap_trim_interval_s=None
            )
        )
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_settling_can_leave_the_collector_as_python_has_it() -> None:
    before = gc.get_threshold()
    settle_the_heap(
        Settings(gc_freeze_after_start=False, gc_young_threshold=None, heap_trim_interval_s=None)
    )
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def _paused(generation: int) -> float:
    value = REGISTRY.get_sample_value(
        "autoglm_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


def test_each_collection_is_observed_once_however_often_the_heap_is_settled() -> None:
    before = gc.get_threshold()
    try:
        settle_the_heap(
            Settings(
                gc_freeze_after_start=False, gc_young_threshold=None, heap_trim_interval_s=None
            )
        )
        settle_the_heap(
            Settings(
                gc_freeze_after_start=False, gc_young_threshold=None, heap_trim_interval_s=None
            )
        )
        full, young = _paused(2), _paused(0)
        gc.collect()
        gc.collect(0)
        assert _paused(2) == full + 1
        assert _paused(0) == young + 1
    finally:
        gc.set_threshold(*before)


def _trimmed() -> float:
    return REGISTRY.get_sample_value("autoglm_heap_trimmed_bytes_total") or 0.0


def test_a_trim_gives_back_what_glibc_held_free_and_counts_it() -> None:
    trim = _malloc_trim()
    if trim is None:
        pytest.skip("no glibc malloc_trim here")
    before = _trimmed()
    freed = [bytes(4096) for _ in range(4096)]  # 16 MiB from malloc, then all of it free
    del freed
    released = trim_once(trim)
    assert released >= 0
    assert _trimmed() == before + released


def _free_tuples(capfd: pytest.CaptureFixture[str], size: int) -> int:
    """How many freed tuples of `size` items CPython keeps for reuse (its allocator's report)."""
    capfd.readouterr()
    sys._debugmallocstats()
    report = capfd.readouterr().err
    match = re.search(rf"^\s*(\d+) free {size}-sized PyTupleObjects", report, re.MULTILINE)
    assert match is not None, report[-2000:]
    return int(match.group(1))


def test_a_turn_with_a_full_collection_empties_the_free_lists(
    capfd: pytest.CaptureFixture[str],
) -> None:
    trim = _malloc_trim()
    if trim is None:
        pytest.skip("no glibc malloc_trim here")
    enabled = gc.isenabled()
    gc.disable()  # no collection of the interpreter's own in between
    try:
        kept = [tuple(range(n, n + 17)) for n in range(3000)]
        del kept  # the first 2,000 of them stay on the 17-item free list
        assert _free_tuples(capfd, 17) >= 1000
        full = gc.get_stats()[2]["collections"]
        tidy(trim, collect=False)
        assert gc.get_stats()[2]["collections"] == full
        assert _free_tuples(capfd, 17) >= 1000
        tidy(trim, collect=True)
        assert gc.get_stats()[2]["collections"] == full + 1
        assert _free_tuples(capfd, 17) == 0
    finally:
        if enabled:
            gc.enable()


def test_trimming_runs_in_one_thread_per_process_and_not_when_off() -> None:
    assert start_trimming(None) is None
    if _malloc_trim() is None:
        assert start_trimming(3600.0) is None
        return
    thread = start_trimming(3600.0)
    assert thread is not None and thread.name == "heap-trim" and thread.daemon
    assert thread.is_alive()
    assert start_trimming(1.0) is thread
