"""Promises 2 to 4 on a Redis Cluster: SIGKILL a Redis primary mid-run.

The platform runs on the three-broker Kafka and the Redis Cluster (3 primaries, 3 replicas) that
`make test-cluster` starts. Submissions with a callback go on throughout; the primary holding
the webhook positions is killed and its replica takes over. Every task the API accepted gets
exactly one committed result and its completion webhook (none lost), and polls show every task
finished: what the failed primary had not replicated is projected again from Kafka. The figures
(tasks, kill and failover times, results, duplicates, lost) are printed.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from confluent_kafka import Consumer, KafkaError
from redis.crc import key_slot

from mcp.names import Keys, Topics
from mcp.settings import Settings
from schemas import TaskResult, loads
from tests.cluster.conftest import KafkaCluster
from tests.conftest import make_settings
from tests.harness import ROOT, Platform, submit, wait_for
from tests.mcp.webhooks.conftest import SECRET, Receiver

pytestmark = pytest.mark.cluster

REDIS_CLUSTER = os.environ.get("AUTOGLM_TEST_REDIS_CLUSTER_URL", "redis://127.0.0.1:17610/0")


def reached(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check` came true within `timeout`: the figures are printed before any assert."""
    try:
        wait_for(check, timeout, "", interval=0.1)
    except AssertionError:
        return False
    return True


class RedisNodes:
    """The six nodes `deploy/redis/cluster.sh` runs; a node can be SIGKILLed and started again."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base_port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        self.ports = [self.base_port + i for i in range(6)]
        self.killed: set[int] = set()

    def _script(self, *args: str) -> str:
        done = subprocess.run(
            [str(ROOT / "deploy" / "redis" / "cluster.sh"), *args, "--port", str(self.base_port)],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def nodes(self) -> dict[int, dict[str, Any]]:
        """`CLUSTER NODES` as a live node sees it: port -> what it says of that node."""
        for port in self.ports:
            if port in self.killed:
                continue
            try:
                found = redis.Redis(port=port, socket_timeout=1).cluster("nodes")
            except redis.RedisError:
                continue
            return {int(str(a).split("@")[0].rsplit(":", 1)[1]): n for a, n in found.items()}
        return {}

    def primary_of(self, slot: int) -> int | None:
        """The port of the healthy primary serving `slot`, as the cluster sees it."""
        for port, node in self.nodes().items():
            flags = str(node["flags"]).split(",")
            if "master" not in flags or "fail" in flags or "fail?" in flags:
                continue
            if any(int(low) <= slot <= int(high) for low, high in node["slots"]):
                return port
        return None

    def ok(self) -> bool:
        """Whether the live nodes say the cluster serves every slot."""
        for port in self.ports:
            if port in self.killed:
                continue
            try:
                info = redis.Redis(port=port, socket_timeout=1).cluster("info")
            except redis.RedisError:
                return False
            if str(info.get("cluster_state")) != "ok":
                return False
        return True

    def kill(self, port: int) -> float:
        """SIGKILL a node; the monotonic time of the kill."""
        pid = int(self._script("pid", "--node", str(port)).strip())
        os.kill(pid, 9)
        killed_at = time.monotonic()
        self.killed.add(port)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30, "the Redis node to die")
        return killed_at

    def heal(self) -> None:
        """Start every killed node again (it rejoins as a replica) and wait for a whole cluster."""
        for port in sorted(self.killed):
            self._script("start", "--node", str(port))
        self.killed.clear()

        def whole() -> bool:
            nodes = self.nodes().values()
            linked = [n for n in nodes if n["connected"] and "fail" not in str(n["flags"])]
            return len(linked) == 6 and self.ok()

        wait_for(whole, 60, "all six Redis nodes", interval=0.5)


@pytest.fixture
def redis_nodes() -> Iterator[RedisNodes]:
    nodes = RedisNodes(REDIS_CLUSTER)
    if len(nodes.nodes()) != 6 or not nodes.ok():
        pytest.fail(
            f"no healthy Redis Cluster of six nodes at {REDIS_CLUSTER}; "
            "run `make test-cluster` (it starts it)"
        )
    yield nodes
    nodes.heal()


@pytest.fixture
def settings(kafka_bootstrap: str, namespace: str) -> Settings:
    """The platform as deployed on a cluster: topics on three replicas, a Redis Cluster."""
    settings = make_settings(
        kafka_bootstrap,
        REDIS_CLUSTER,
        namespace,
        webhooks={
            "allow_networks": ["127.0.0.0/8", "::1/128"],
            "secrets": {"default": [SECRET]},
            "schedule_s": [0.0, 0.2, 0.5, 1.0, 2.0],
        },
    )
    kafka = settings.kafka.model_copy(
        update={"replication_factor": 3, "min_insync_replicas": 2, "partitions": 1}
    )
    cluster = settings.redis.model_copy(update={"cluster": True})
    return settings.model_copy(update={"kafka": kafka, "redis": cluster})


@dataclass
class Submitter:
    """Submits echo tasks with a callback back to back; remembers when each was accepted."""

    client: httpx.Client
    callback: str
    accepted: dict[str, float] = field(default_factory=dict)
    refused: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            sent = time.monotonic()
            body = {
                "model": "echo",
                "action": "generate",
                "payload": {"n": n, "sleep_ms": 5},
                "callback_url": self.callback,
            }
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
        return {task_id for task_id, sent in list(self.accepted.items()) if sent > moment}


@dataclass
class ResultReader:
    """Reads `task-results` (read_committed) from the start; when each result arrived."""

    settings: Settings
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def tasks(self) -> set[str]:
        return {task_id for task_id, _ in list(self.arrivals)}

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
                        pass
        finally:
            consumer.close()


def _task_of(webhook_id: str) -> str:
    return webhook_id.removeprefix("msg_").rsplit("_", 1)[0]


def _webhooked(receiver: Receiver) -> set[str]:
    """The tasks whose completion webhook came."""
    return {_task_of(r.webhook_id) for r in receiver.on("/hook")}


def _unfinished(client: httpx.Client, task_ids: list[str]) -> list[str]:
    """Tasks whose poll does not show them succeeded (missing from Redis or behind)."""
    behind = []
    for task_id in task_ids:
        response = client.get(f"/v1/tasks/{task_id}")
        if response.status_code != 200 or response.json().get("status") != "succeeded":
            behind.append(task_id)
    return behind


def _logged(log_dir: Path, text: str) -> int:
    return sum(path.read_text(errors="replace").count(text) for path in log_dir.glob("*.log"))


def test_primary_sigkill_mid_run_loses_no_result_and_no_webhook(
    platform: Platform, redis_nodes: RedisNodes, kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    receiver = Receiver()
    keys = Keys.of(platform.settings)
    victim_key = keys.webhook_applied
    slot = key_slot(victim_key.encode())
    try:
        api = platform.api()
        worker = platform.worker("echo", "0")
        dispatcher = platform.dispatcher()
        reader = ResultReader(platform.settings)
        with platform.client() as client:
            submitter = Submitter(client, receiver.url("/hook"))
            threads = [threading.Thread(target=t.run, daemon=True) for t in (submitter, reader)]
            for thread in threads:
                thread.start()
            try:
                wait_for(lambda: len(reader.arrivals) >= 30, 120, "the first results")
                wait_for(lambda: len(receiver.on("/hook")) >= 20, 60, "the first webhooks")
                victim = redis_nodes.primary_of(slot)
                assert victim is not None
                killed_at = redis_nodes.kill(victim)
                failed_over = reached(
                    lambda: redis_nodes.primary_of(slot) not in (None, victim) and redis_nodes.ok(),
                    60,
                )
                failover_s = time.monotonic() - killed_at
                recovered = reached(lambda: bool(reader.tasks() & submitter.since(killed_at)), 60)
                recovery_s = time.monotonic() - killed_at
                time.sleep(3)  # keep going on the new primary for a while
            finally:
                submitter.stop.set()
                threads[0].join(30)
            accepted = dict(submitter.accepted)
            reached(lambda: set(accepted) <= {t for t, _ in reader.arrivals}, 120)
            reached(lambda: set(accepted) <= _webhooked(receiver), 120)
            time.sleep(2)  # a duplicate would come right after the original
            reader.stop.set()
            threads[1].join(30)
            behind = _unfinished(client, sorted(accepted))
            if behind:  # give the projections a moment, then look again
                time.sleep(5)
                behind = _unfinished(client, behind)
    finally:
        receiver.close()
    counts = Counter(task_id for task_id, _ in reader.arrivals)
    deliveries = Counter(r.webhook_id for r in receiver.on("/hook"))
    lost_results = set(accepted) - set(counts)
    lost_webhooks = set(accepted) - {_task_of(w) for w in deliveries}
    figures = {
        "tasks_accepted": len(accepted),
        "refused_or_failed_submissions": len(submitter.refused),
        "kills": 1,
        "killed_redis_primary": victim,
        "new_primary": redis_nodes.primary_of(slot),
        "failover_s": round(failover_s, 2),
        "first_result_of_a_later_task_s": round(recovery_s, 2),
        "results": sum(counts.values()),
        "result_duplicates": sum(1 for n in counts.values() if n > 1),
        "lost_results": len(lost_results),
        "webhook_deliveries": sum(deliveries.values()),
        "webhook_duplicates": sum(1 for n in deliveries.values() if n > 1),
        "lost_webhooks": len(lost_webhooks),
        "polls_not_succeeded": len(behind),
        "reprojections": _logged(tmp_path, "failed over"),
    }
    print("redis primary kill:", orjson.dumps(figures).decode())
    assert failed_over, "no replica took over the killed primary's slots"
    assert not lost_results, sorted(lost_results)[:5]
    assert figures["result_duplicates"] == 0, figures
    assert not lost_webhooks, sorted(lost_webhooks)[:5]
    assert not behind, f"polls that do not show the result: {behind[:5]}"
    assert recovered, "no task submitted after the kill got its result"
    for proc in (api, worker, dispatcher):
        assert proc.alive, proc.log()[-3000:]
