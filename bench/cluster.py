"""Per-process throughput on a three-node Kafka cluster (replication factor 3,
min.insync.replicas 2), against one broker with replication factor 1 in the same run.

- API: closed-loop submits (group commit) into one API process;
- worker: one echo worker draining a backlog of queued tasks (consume, run, publish the result in
  the same transaction as the offsets).

These are the figures a sizing estimate multiplies. The suite starts the cluster itself
(`deploy/kafka/cluster.sh`, on `BENCH_CLUSTER_KAFKA_PORT`) and stops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from bench.backlog import _tasks
from bench.pipeline import KAFKA, REDIS, ROOT, _closed_loop, _free_port, _start, _stop
from mcp.kafka import ensure_topics
from mcp.names import Topics
from mcp.settings import Settings

CLUSTER_PORT = int(os.environ.get("BENCH_CLUSTER_KAFKA_PORT", "29610"))
CLUSTER = ",".join(f"127.0.0.1:{CLUSTER_PORT + i}" for i in range(3))
WARM_UP_S = float(os.environ.get("BENCH_CLUSTER_WARM_UP_S", "30"))
BACKLOG = int(os.environ.get("BENCH_CLUSTER_BACKLOG", "30000"))
SAMPLE_S = float(os.environ.get("BENCH_CLUSTER_SAMPLE_S", "20"))
DATA = Path.home() / ".cache" / "autoglm-mcp" / f"kafka-cluster-bench-{CLUSTER_PORT}"


def _settings(bootstrap: str, prefix: str, replicated: bool) -> Settings:
    kafka: dict[str, Any] = {"bootstrap_servers": bootstrap, "topic_prefix": prefix}
    if replicated:
        kafka |= {"replication_factor": 3, "min_insync_replicas": 2}
    return Settings(
        dev_mode=True,
        instance_id=prefix.rstrip("."),
        log_level="WARNING",
        kafka=kafka,
        redis={"url": REDIS, "key_prefix": prefix},
    )


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), **extra}


def _consumed(bootstrap: str, group: str, topic: str) -> int:
    """How many records of `topic` the group has committed its way through."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = [TopicPartition(topic, p) for p in partitions]
        for attempt in range(20):
            try:
                committed = consumer.committed(wanted, timeout=10)
                return sum(max(0, tp.offset) for tp in committed)
            except KafkaException:  # the group's coordinator is still loading or moving
                if attempt == 19:
                    raise
                time.sleep(0.5)
        return 0
    finally:
        consumer.close()


def api_submits(bootstrap: str, replicated: bool, warm_up_s: float) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    settings = _settings(bootstrap, prefix, replicated)
    server = settings.server.model_copy(update={"run_projector": False})
    env = _env(settings.model_copy(update={"server": server}))
    proc = _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz")
    try:
        return _closed_loop(port, warm_up_s)
    finally:
        _stop(proc)


def worker_drain(bootstrap: str, replicated: bool) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = _settings(bootstrap, prefix, replicated)
    topics = Topics.of(settings)
    ensure_topics(settings, ["echo"])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for key, value in _tasks(BACKLOG):
        while True:
            try:
                producer.produce(topics.tasks("echo"), value, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    env = _env(settings)
    worker = _start(["-m", "autoglm", "worker", "--model", "echo"], env, None, "")
    group = topics.group("worker.echo")
    try:
        deadline = time.monotonic() + 120
        while _consumed(bootstrap, group, topics.tasks("echo")) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker committed nothing in 120 s")
            time.sleep(0.5)
        time.sleep(3)  # past the first batches
        first, t0 = _consumed(bootstrap, group, topics.tasks("echo")), time.monotonic()
        time.sleep(SAMPLE_S)
        last, t1 = _consumed(bootstrap, group, topics.tasks("echo")), time.monotonic()
    finally:
        _stop(worker)
    return {
        "backlog": BACKLOG,
        "tasks": last - first,
        "seconds": round(t1 - t0, 2),
        "tasks_per_s": round((last - first) / (t1 - t0), 1),
    }


def _cluster(command: str) -> None:
    subprocess.run(
        [str(ROOT / "deploy" / "kafka" / "cluster.sh"), command, "--port", str(CLUSTER_PORT)],
        check=True,
        env={
            **os.environ,
            "KAFKA_CLUSTER_DATA": str(DATA),
            # Measured with the full JIT, like the single broker (the tests use C1 only).
            "KAFKA_CLUSTER_JAVA_OPTS": "-XX:TieredStopAtLevel=4",
        },
    )


def measure(bootstrap: str, replicated: bool) -> dict[str, Any]:
    api = api_submits(bootstrap, replicated, WARM_UP_S)
    print(f"  API submits: {api['throughput_rps']} req/s p50 {api['p50_ms']} ms", flush=True)
    worker = worker_drain(bootstrap, replicated)
    print(f"  echo worker: {worker['tasks_per_s']} tasks/s", flush=True)
    return {"api_submit": api, "echo_worker": worker}


def run(out: dict[str, Any]) -> None:
    result: dict[str, Any] = {"load_average_before": os.getloadavg()}
    print("one broker, replication factor 1:", flush=True)
    result["one_broker_rf1"] = measure(KAFKA, replicated=False)
    shutil.rmtree(DATA, ignore_errors=True)
    _cluster("up")
    try:
        print("three brokers, replication factor 3, min.insync.replicas 2:", flush=True)
        result["three_brokers_rf3"] = measure(CLUSTER, replicated=True)
    finally:
        _cluster("down")
        shutil.rmtree(DATA, ignore_errors=True)
    single, cluster = result["one_broker_rf1"], result["three_brokers_rf3"]
    result["api_ratio_cluster_vs_one"] = round(
        cluster["api_submit"]["throughput_rps"] / single["api_submit"]["throughput_rps"], 2
    )
    result["worker_ratio_cluster_vs_one"] = round(
        cluster["echo_worker"]["tasks_per_s"] / single["echo_worker"]["tasks_per_s"], 2
    )
    result["load_average_after"] = os.getloadavg()
    out["cluster"] = result
