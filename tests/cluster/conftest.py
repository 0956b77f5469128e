"""Fixtures for the fault tests on a real cluster: `make test-cluster` starts a three-node Kafka
(replication factor 3, min.insync.replicas 2) and a Redis Cluster (3 primaries, 3 replicas).

A missing cluster is a failure, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from mcp.settings import Settings
from tests.conftest import make_settings
from tests.harness import ROOT, wait_for

KAFKA_CLUSTER = os.environ.get(
    "AUTOGLM_TEST_KAFKA_CLUSTER", "127.0.0.1:19610,127.0.0.1:19611,127.0.0.1:19612"
)
REDIS_CLUSTER = os.environ.get("AUTOGLM_TEST_REDIS_CLUSTER_URL", "redis://127.0.0.1:17610/0")


def cluster_script(kind: str, base_port: int, *args: str) -> str:
    """What `deploy/<kind>/cluster.sh <args> --port <base_port>` printed."""
    done = subprocess.run(
        [str(ROOT / "deploy" / kind / "cluster.sh"), *args, "--port", str(base_port)],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


class KafkaCluster:
    """The three nodes `deploy/kafka/cluster.sh` runs; a node can be SIGKILLed and started again."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.base_port = min(int(hp.rsplit(":", 1)[1]) for hp in bootstrap.split(","))
        self.killed: set[int] = set()

    def _script(self, *args: str) -> str:
        return cluster_script("kafka", self.base_port, *args)

    def brokers(self) -> set[int]:
        return set(
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=10).brokers
        )

    def leader(self, topic: str, partition: int = 0) -> int:
        metadata = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(topic, timeout=10)
        return int(metadata.topics[topic].partitions[partition].leader)

    def group_coordinator(self, group: str) -> int:
        """The broker that coordinates a consumer group (it need not exist yet)."""
        deadline = time.monotonic() + 90
        while True:  # a fresh cluster has no coordinators until it has created its offsets topic
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            try:
                found = admin.describe_consumer_groups([group])[group].result(timeout=10)
                return int(found.coordinator.id)
            except (KafkaException, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def create_topic(self, topic: str, leader: int, min_insync_replicas: int = 2) -> None:
        """A one-partition topic on all three nodes whose preferred (first) leader is `leader`."""
        replicas = [leader, *sorted({1, 2, 3} - {leader})]
        new = NewTopic(
            topic,
            num_partitions=1,
            replica_assignment=[replicas],
            config={"min.insync.replicas": str(min_insync_replicas)},
        )
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([new])[topic].result(timeout=30)
        wait_for(lambda: self.leader(topic) == leader, 30, f"{topic} led by node {leader}")

    def replication(self, topic: str) -> tuple[int, str]:
        """A topic's replica count and its `min.insync.replicas`."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        replicas = len(admin.list_topics(topic, timeout=10).topics[topic].partitions[0].replicas)
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        return replicas, configs["min.insync.replicas"].value

    def kill(self, node: int) -> float:
        """SIGKILL a node; the monotonic time of the kill."""
        pid = int(self._script("pid", "--node", str(node)).strip())
        os.kill(pid, 9)
        killed_at = time.monotonic()
        self.killed.add(node)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30, "the broker to die")
        return killed_at

    def start(self, node: int) -> None:
        self._script("start", "--node", str(node))
        self.killed.discard(node)

    def heal(self) -> None:
        """Start every killed node again and wait until all three are in the metadata."""
        for node in sorted(self.killed):
            self.start(node)
        wait_for(lambda: self.brokers() == {1, 2, 3}, 120, "all three brokers", interval=1)


@pytest.fixture(scope="session")
def kafka_cluster() -> KafkaCluster:
    cluster = KafkaCluster(KAFKA_CLUSTER)
    try:
        brokers = cluster.brokers()
    except Exception as exc:
        pytest.fail(
            f"the Kafka cluster at {KAFKA_CLUSTER} is not reachable ({exc}); "
            "run `make test-cluster` (it starts it)"
        )
    if brokers != {1, 2, 3}:
        pytest.fail(f"the Kafka cluster has brokers {sorted(brokers)}, not 1, 2 and 3")
    return cluster


@pytest.fixture
def healed_kafka(kafka_cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The cluster, whole again after the test whatever it killed."""
    yield kafka_cluster
    kafka_cluster.heal()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: KafkaCluster) -> str:
    return kafka_cluster.bootstrap


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, namespace: str) -> Settings:
    """The platform as deployed on a cluster: every topic on three replicas, two in sync."""
    settings = make_settings(kafka_bootstrap, redis_url, namespace)
    kafka = settings.kafka.model_copy(
        update={"replication_factor": 3, "min_insync_replicas": 2, "partitions": 1}
    )
    return settings.model_copy(update={"kafka": kafka})


class RedisNodes:
    """The six nodes `deploy/redis/cluster.sh` runs; a node can be SIGKILLed and started again."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base_port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        self.ports = [self.base_port + i for i in range(6)]
        self.killed: set[int] = set()

    def _script(self, *args: str) -> str:
        return cluster_script("redis", self.base_port, *args)

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
