"""Promise 3 for idempotency keys: FLUSHALL, `autoglm replay`, and nothing is lost."""

from __future__ import annotations

import pytest
import redis

from tests.harness import Platform, PrivateRedis, submit, wait_statuses

pytestmark = pytest.mark.integration

ECHO = {"model": "echo", "action": "generate"}


def replay(platform: Platform) -> None:
    proc = platform._proc("replay", ["replay"])
    assert proc.popen is not None and proc.popen.wait(120) == 0, proc.log()


def test_idempotency_keys_survive_redis_loss(
    platform: Platform, private_redis: PrivateRedis
) -> None:
    platform = platform.variant(redis={"url": private_redis.url})
    try:
        platform.api()
        platform.worker("echo", "0")
        body = {**ECHO, "payload": {"prompt": "once"}}
        key = {"Idempotency-Key": "order-7"}
        with platform.client() as client:
            first = submit(client, body, **key)
            assert first.status_code == 202
            task_id = first.json()["task_id"]
            wait_statuses(client, [task_id], {"succeeded"})
            redis.Redis.from_url(private_redis.url).flushall()

            replay(platform)
            again = submit(client, body, **key)
            other = submit(client, {**ECHO, "payload": {"prompt": "twice"}}, **key)
        assert again.status_code == 200, again.text
        assert again.json()["task_id"] == task_id and again.json()["status"] == "succeeded"
        assert other.status_code == 409
        assert other.json()["error"]["details"]["task_id"] == task_id
    finally:
        platform.stop()
