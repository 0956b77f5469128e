"""Promises 2 to 4 on a Redis Cluster: SIGKILL a Redis primary mid-run.

The platform runs on the three-broker Kafka and the Redis Cluster (3 primaries, 3 replicas) that
`make test-cluster` starts. Submissions with a callback go on throughout; the primary holding
the webhook positions is killed and its replica takes over. Every task the API accepted gets
exactly one committed result and its completion webhook (none lost), and polls show every task
finished: what the failed primary had not replicated is projected again from Kafka. The figures
(tasks, kill and failover times, results, duplicates, lost) are printed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from redis.crc import key_slot

from mcp.names import Keys
from mcp.settings import Settings
from tests.cluster.conftest import REDIS_CLUSTER, KafkaCluster, RedisNodes
from tests.cluster.load import ResultReader, Submitter, reached
from tests.conftest import make_settings
from tests.harness import Platform, wait_for
from tests.mcp.webhooks.conftest import SECRET, Receiver

pytestmark = pytest.mark.cluster


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
                recovered = reached(
                    lambda: reader.first_result_of(submitter.since(killed_at)) is not None, 60
                )
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
    first_result = reader.first_result_of(submitter.since(killed_at))
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
        # Recovery: from the kill until a task submitted after it has its result.
        "recovery_s": None if first_result is None else round(first_result - killed_at, 2),
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
