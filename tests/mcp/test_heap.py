"""A server process's collector once started: start-up's heap frozen, young collections rarer,
each collection's pause observed."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from mcp.heap import settle_the_heap
from mcp.settings import Settings


def test_settling_freezes_the_heap_and_sets_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        settle_the_heap(Settings(gc_freeze_after_start=True, gc_young_threshold=12_345))
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_settling_can_leave_the_collector_as_python_has_it() -> None:
    before = gc.get_threshold()
    settle_the_heap(Settings(gc_freeze_after_start=False, gc_young_threshold=None))
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
        settle_the_heap(Settings(gc_freeze_after_start=False, gc_young_threshold=None))
        settle_the_heap(Settings(gc_freeze_after_start=False, gc_young_threshold=None))
        full, young = _paused(2), _paused(0)
        gc.collect()
        gc.collect(0)
        assert _paused(2) == full + 1
        assert _paused(0) == young + 1
    finally:
        gc.set_threshold(*before)
