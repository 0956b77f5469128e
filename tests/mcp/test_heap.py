"""A server process's collector once started: start-up's heap frozen, young collections rarer."""

from __future__ import annotations

import gc

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
