"""Promises 2 and 3 around the worker's fast path to Redis: a worker killed between its Kafka
commit and its own Redis write loses nothing (the projector applies the committed events) and
its successor runs nothing again (the offsets were in the same transaction)."""

from __future__ import annotations

import pytest

from tests.harness import Platform, Proc, submit_echo, wait_for, wait_statuses
from tests.integration.test_pipeline import assert_one_result_each

pytestmark = pytest.mark.integration


def test_a_worker_killed_between_its_commit_and_its_redis_write_loses_nothing(
    platform: Platform,
) -> None:
    platform.api()
    crashing = Proc(
        "worker-crashing",
        ["echo"],
        platform.env,
        platform.log_dir,
        module="tests.integration.crash_after_commit",
    )
    platform.procs.append(crashing.start())
    wait_for(lambda: "ready" in crashing.log() or not crashing.alive, 120, "the crashing worker")
    with platform.client() as client:
        [first] = submit_echo(client, 1)
        wait_for(lambda: not crashing.alive, 60, "the SIGKILL after the worker's first commit")
        assert crashing.popen is not None and crashing.popen.returncode == -9
        body = wait_statuses(client, [first], {"succeeded", "failed"}, timeout=60)[first]
        assert body["status"] == "succeeded"
        assert body["attempts"] == 1
        platform.worker("echo", "0")  # the same slot: takes over its transactional.id
        [second] = submit_echo(client, 1)
        wait_statuses(client, [second], {"succeeded"}, timeout=60)
        again = client.get(f"/v1/tasks/{first}").json()
    assert again["attempts"] == 1  # committed with its offset: never read again
    assert_one_result_each(platform, [first, second])
