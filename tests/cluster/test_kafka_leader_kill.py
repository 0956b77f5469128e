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

import orjson
import pytest

from mcp.names import Topics
from schemas import AsyncTask, loads
from tests.cluster.conftest import KafkaCluster
from tests.cluster.load import ResultReader, Submitter, reached
from tests.harness import Platform, scan, wait_for

pytestmark = pytest.mark.cluster


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
