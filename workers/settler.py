"""Tells Redis of committed outcomes from a thread of its own.

Once a transaction is committed its outcomes are durable; writing them to Redis at once (for
polls, SSE and the queue statistics) is a fast path that the projector would take too, a little
later. Done on the worker's loop, those round trips held up reading, claiming and committing the
next tasks. The settler takes the outcomes in commit order; whatever several commits left while
it was busy goes to Redis in one round trip.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from mcp.threads import take_all
from workers.outcome import Outcome

log = logging.getLogger(__name__)

_STOP = None


class Settler:
    def __init__(self, publish: Callable[[list[Outcome]], None], name: str = "settler") -> None:
        self._publish = publish
        self._queue: queue.SimpleQueue[list[Outcome] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, outcomes: list[Outcome]) -> None:
        self._queue.put(outcomes)

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            items = take_all(self._queue)
            outcomes = [outcome for item in items if item is not _STOP for outcome in item]
            if outcomes:
                try:
                    self._publish(outcomes)
                except Exception:  # the projector gets there too; the thread must go on
                    log.exception("publishing %d committed outcomes failed", len(outcomes))
            if any(item is _STOP for item in items):
                return
