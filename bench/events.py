"""When each task's terminal event becomes readable (read_committed) in `task-events`."""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Consumer

from bench.pipeline import KAFKA
from mcp.names import Topics
from mcp.records import decode_value
from mcp.settings import Settings
from schemas import TaskEvent


class TerminalEvents:
    """Watches `task-events` from a thread; `at` maps a task id to the `clock` reading when its
    terminal event was first read."""

    def __init__(
        self,
        settings: Settings,
        group: str,
        clock: Callable[[], float],
        fetch_wait_max_ms: int = 1,
    ) -> None:
        self.at: dict[str, float] = {}
        self._fetch_wait_max_ms = fetch_wait_max_ms
        self._clock = clock
        self._topic = Topics.of(settings).events
        self._group = group
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": KAFKA,
                "group.id": self._group,
                "isolation.level": "read_committed",
                "auto.offset.reset": "latest",
                "fetch.wait.max.ms": self._fetch_wait_max_ms,
            }
        )
        consumer.subscribe([self._topic])
        while not self._stop.is_set():
            msg = consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            event = decode_value(TaskEvent, msg.value(), msg.headers())
            if event.status.terminal:
                self.at.setdefault(event.task_id, self._clock())
        consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
