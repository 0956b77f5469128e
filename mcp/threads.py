"""How the threads of one process share the interpreter (the GIL)."""

from __future__ import annotations

import queue
import sys
from typing import TypeVar

from mcp.settings import Settings


def share_the_interpreter(settings: Settings) -> None:
    """Let a thread that waits for the GIL have it within `gil_switch_interval_ms`.

    Python's 5 ms default lets a busy thread (the API's event loop serving polls, a worker's
    loop) keep the interpreter that long while another thread that has only to hand a reply on
    waits: the API's committer after Kafka's commit, a worker's slot thread with an outcome. Each
    such wait lands in a task's latency, several times over along its way.

    Shorter is not better, though: the API's event loop shares the interpreter with its
    committer lanes, its after-commit thread and its projector thread, and at every switch it
    hands the interpreter over and waits for it back. At 1,000 tasks/s with long polls, 0.5 ms
    left that loop so little of the interpreter that submissions queued in front of it for
    hundreds of milliseconds; 2 ms cut the p99 by 2-5x, with 100 tasks/s no worse (README,
    the end-to-end rows).
    """
    if settings.gil_switch_interval_ms is not None:
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)


T = TypeVar("T")


def take_all(source: queue.SimpleQueue[T]) -> list[T]:
    """Wait for one item, then take whatever else is queued meanwhile, without waiting: a
    thread that writes in batches sends everything that piled up in one round trip."""
    items = [source.get()]
    while True:
        try:
            items.append(source.get_nowait())
        except queue.Empty:
            return items
