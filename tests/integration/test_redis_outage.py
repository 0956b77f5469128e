"""Promise 3 under fire: Redis dies mid-work and comes back empty; nothing is lost or doubled."""

from __future__ import annotations

import time

import pytest

from tests.harness import (
    Platform,
    PrivateRedis,
    committed_results,
    submit_echo,
    wait_for,
    wait_statuses,
)

pytestmark = pytest.mark.integration


def test_worker_and_projector_ride_out_a_redis_crash(
    platform: Platform, private_redis: PrivateRedis
) -> None:
    platform = platform.variant(redis={"url": private_redis.url})
    try:
        platform.api()
        worker = platform.worker("echo", "0")
        with platform.client() as client:
            before = submit_echo(client, 20, sleep_ms=20)
            private_redis.kill()  # mid-work: claims, streams and projections now fail
            time.sleep(1.5)
            private_redis.start()  # back, and empty
            during = submit_echo(client, 10)
            wait_for(lambda: len(committed_results(platform.settings)) >= 30, 90, "all results")
            assert worker.alive, worker.log()
            # What Redis saw after it came back is projected again, by worker and projector.
            wait_statuses(client, during, {"succeeded"}, timeout=30)
        counts: dict[str, int] = {}
        for result in committed_results(platform.settings):
            counts[result.task_id] = counts.get(result.task_id, 0) + 1
        assert set(counts) == set(before) | set(during)
        assert set(counts.values()) == {1}
    finally:
        platform.stop()
