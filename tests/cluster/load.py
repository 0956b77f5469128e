"""The load of the fault tests: echo tasks submitted back to back, and a reader of the results.

Both run in threads while a broker or a Redis primary is killed; the figures come from what
they saw (when each task was accepted, when each result arrived).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from confluent_kafka import Consumer

from mcp.names import Topics
from mcp.settings import Settings
from schemas import TaskResult, loads
from tests.harness import submit, wait_for


def reached(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check` came true within `timeout`: the figures are printed before any assert."""
    try:
        wait_for(check, timeout, "", interval=0.1)
    except AssertionError:
        return False
    return True


@dataclass
class Submitter:
    """Submits echo tasks back to back (with a callback when one is given); remembers when each
    was accepted."""

    client: httpx.Client
    callback: str | None = None
    accepted: dict[str, float] = field(default_factory=dict)
    refused: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            sent = time.monotonic()
            body: dict[str, object] = {
                "model": "echo",
                "action": "generate",
                "payload": {"n": n, "sleep_ms": 5},
            }
            if self.callback is not None:
                body["callback_url"] = self.callback
            try:
                response = submit(self.client, body)
            except httpx.HTTPError:
                self.refused.append((sent, 0))
                continue
            if response.status_code == 202:
                self.accepted[response.json()["task_id"]] = sent
            else:
                self.refused.append((sent, response.status_code))
                time.sleep(0.1)

    def since(self, moment: float) -> set[str]:
        """The tasks whose submission began after `moment`."""
        return {task_id for task_id, sent in list(self.accepted.items()) if sent > moment}


@dataclass
class ResultReader:
    """Reads `task-results` (read_committed) from the start; when each result arrived."""

    settings: Settings
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def tasks(self) -> set[str]:
        return {task_id for task_id, _ in list(self.arrivals)}

    def first_result_of(self, task_ids: set[str]) -> float | None:
        """When the first result of any of these tasks arrived."""
        return min((t for task_id, t in list(self.arrivals) if task_id in task_ids), default=None)

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka.bootstrap_servers,
                "group.id": f"{self.settings.kafka.topic_prefix}reader",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([Topics.of(self.settings).results])
        try:
            while not self.stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is None:  # the reader rides out a broker's death too
                        result = loads(TaskResult, msg.value() or b"")
                        self.arrivals.append((result.task_id, time.monotonic()))
        finally:
            consumer.close()
