"""Promise 2 on a three-broker cluster: SIGKILL the leader of the task partition mid-run; the
same broker coordinates the worker's consumer group.

Submissions go on throughout. Every task the API accepted (202) gets exactly one committed
result, none is lost; the figures (tasks, kills, results, duplicates, lost, recovery time) are
printed (`make test-cluster` shows them with -rP).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, KafkaError

from mcp.names import Topics
from mcp.settings import Settings
from schemas import AsyncTask, TaskResult, loads
from tests.cluster.conftest import KafkaCluster
from tests.harness import Platform, scan, submit, wait_for

pytestmark = pytest.mark.cluster


def reached(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check` came true within `timeout`: the figures are printed before any assert."""
    try:
        wait_for(check, timeout, "", interval=0.1)
    except AssertionError:
        return False
    return True


@dataclass
class Submitter:
    """Submits echo tasks back to back from a thread; remembers when each was accepted."""

    client: httpx.Client
    accepted: dict[str, float] = field(default_factory=dict)
    refused: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            sent = time.monotonic()
            try:
                response = submit(
                    self.client,
                    {"model": "echo", "action": "generate", "payload": {"n": n, "sleep_ms": 5}},
                )
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
                    error = msg.error()
                    if error is None:
                        result = loads(TaskResult, msg.value() or b"")
                        self.arrivals.append((result.task_id, time.monotonic()))
                    elif error.code() != KafkaError._PARTITION_EOF:
                        pass  # the reader rides out the broker's death like everyone else
        finally:
            consumer.close()


def test_leader_sigkill_mid_run_keeps_exactly_one_result(
    platform: Platform, healed_kafka: KafkaCluster
) -> None:
    topics = Topics.of(platform.settings)
    lane = topics.tasks("echo")
    # The worst case: the lane's leader also coordinates the worker's group, so the kill takes
    # the broker that the worker's send_offsets_to_transaction talks to (librdkafka#5511).
    leader = healed_kafka.group_coordinator(topics.group("worker.echo"))
    healed_kafka.create_topic(lane, leader)
    platform.api()
    worker = platform.worker("echo", "0")
    assert healed_kafka.replication(lane) == (3, "2")
    assert healed_kafka.leader(lane) == leader
    reader = ResultReader(platform.settings)
    with platform.client() as client:
        submitter = Submitter(client)
        threads = [threading.Thread(target=t.run, daemon=True) for t in (submitter, reader)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: len(reader.arrivals) >= 30, 120, "the first results")
            killed_at = healed_kafka.kill(leader)
            recovered = reached(
                lambda: reader.first_result_of(submitter.since(killed_at)) is not None, 120
            )
            time.sleep(3)  # keep going on two brokers for a while
        finally:
            submitter.stop.set()
            threads[0].join(30)
        accepted = dict(submitter.accepted)
        reached(lambda: set(accepted) <= {t for t, _ in reader.arrivals}, 120)
        time.sleep(1)  # a duplicate would arrive right after the original
        reader.stop.set()
        threads[1].join(30)
    counts = Counter(task_id for task_id, _ in reader.arrivals)
    lost = set(accepted) - set(counts)
    duplicates = {t: n for t, n in counts.items() if n > 1}
    unasked = set(counts) - set(accepted)
    queued = {loads(AsyncTask, value).task_id for _, value, _ in scan(platform.settings, lane)}
    first_accept = min((t for t in accepted.values() if t > killed_at), default=killed_at)
    first_result = reader.first_result_of(submitter.since(killed_at))
    log = worker.log()
    figures = {
        "tasks_accepted": len(accepted),
        "refused_or_failed_submissions": len(submitter.refused),
        "kills": 1,
        "killed_broker": leader,
        "new_leader": healed_kafka.leader(lane),
        "results": sum(counts.values()),
        "lost": len(lost),
        "lost_but_queued": len(lost & queued),
        "duplicates": len(duplicates),
        "results_of_refused_submissions": len(unasked),
        "first_202_after_kill_s": round(first_accept - killed_at, 2),
        # Recovery: from the kill until a task submitted after it has its result.
        "recovery_s": None if first_result is None else round(first_result - killed_at, 2),
        "worker_transactions_lost": log.count("transaction lost"),
        "worker_producers_abandoned": log.count("a new producer takes over"),
    }
    print("kafka leader kill:", orjson.dumps(figures).decode())
    assert not lost, sorted(lost)[:5]
    assert not duplicates, duplicates
    assert not unasked, f"results of tasks that were refused: {sorted(unasked)[:5]}"
    assert recovered, "no task submitted after the kill got its result"
    assert worker.alive, worker.log()
    assert figures["new_leader"] != leader
