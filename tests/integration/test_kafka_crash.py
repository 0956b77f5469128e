"""Promise 2 when Kafka itself is SIGKILLed mid-work and comes back: one result per task."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Platform, PrivateKafka, committed_results, submit, submit_echo, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(tmp_path / "kafka")
    broker.up()
    yield broker
    broker.down()


def test_broker_sigkill_mid_work_keeps_exactly_one_result(
    platform: Platform, private_kafka: PrivateKafka
) -> None:
    platform = platform.variant(kafka={"bootstrap_servers": private_kafka.bootstrap})
    try:
        platform.api()
        worker = platform.worker("echo", "0")
        with platform.client() as client:
            task_ids = submit_echo(client, 60, sleep_ms=40)
            wait_for(lambda: len(committed_results(platform.settings)) >= 5, 60, "first results")
            private_kafka.kill()
            private_kafka.up()
            wait_for(
                lambda: len(committed_results(platform.settings)) >= len(task_ids),
                180,
                "all results",
            )
            assert worker.alive, worker.log()
            after = submit(
                client, {"model": "echo", "action": "generate", "payload": {"after": True}}
            )
            assert after.status_code == 202, after.text
        counts = Counter(r.task_id for r in committed_results(platform.settings))
        assert set(task_ids) <= set(counts)
        assert max(counts.values()) == 1, {t: n for t, n in counts.items() if n > 1}
    finally:
        platform.stop()
