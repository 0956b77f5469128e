"""Promise 3 for webhooks and idempotency keys: FLUSHALL, `autoglm replay`, and nothing is lost."""

from __future__ import annotations

import pytest
import redis

from mcp.names import Topics
from schemas import WebhookRecord, loads
from tests.harness import Platform, PrivateRedis, scan, submit, wait_for, wait_statuses
from tests.mcp.webhooks.conftest import SECRET, Receiver, Reply, verify

pytestmark = pytest.mark.integration

ECHO = {"model": "echo", "action": "generate"}
RETRY_S = 3.0


def replay(platform: Platform) -> None:
    proc = platform._proc("replay", ["replay"])
    assert proc.popen is not None and proc.popen.wait(120) == 0, proc.log()


def test_a_failed_webhook_is_retried_after_redis_is_lost_and_replayed(
    platform: Platform, private_redis: PrivateRedis
) -> None:
    platform = platform.variant(
        redis={"url": private_redis.url},
        webhooks={"secrets": {"default": [SECRET]}, "schedule_s": [0, RETRY_S], "jitter": 0},
    )
    receiver = Receiver()
    try:
        platform.api()
        platform.worker("echo", "0")
        dispatcher = platform.dispatcher()
        with platform.client() as client:
            body = {
                **ECHO,
                "payload": {"n": 1},
                "callback_url": receiver.script("/hook", Reply(500), Reply(200)),
            }
            task_id = submit(client, body).json()["task_id"]
            wait_for(lambda: len(receiver.on("/hook")) == 1, 60, "the first attempt")
            wait_for(
                lambda: (
                    client.get(f"/v1/tasks/{task_id}").json()["webhook"]["status"] == "retrying"
                ),
                30,
                "the retry to be scheduled",
            )
            dispatcher.kill()
            redis.Redis.from_url(private_redis.url).flushall()
            assert client.get(f"/v1/tasks/{task_id}").status_code == 404

            replay(platform)
            view = client.get(f"/v1/tasks/{task_id}").json()
            assert view["status"] == "succeeded"
            webhook = view["webhook"]
            assert (webhook["status"], webhook["attempts"]) == ("retrying", 1)
            assert webhook["last_status_code"] == 500 and webhook["next_attempt_at"] is not None
            assert [a["status_code"] for a in webhook["history"]] == [500]

            platform.dispatcher()
            wait_for(lambda: len(receiver.on("/hook")) == 2, 60, "the retry")
            wait_for(
                lambda: (
                    client.get(f"/v1/tasks/{task_id}").json()["webhook"]["status"] == "delivered"
                ),
                30,
                "the retry to be recorded",
            )
            webhook = client.get(f"/v1/tasks/{task_id}").json()["webhook"]
        first, retry = receiver.on("/hook")
        assert retry.webhook_id == first.webhook_id == f"msg_{task_id}_succeeded"
        assert retry.body == first.body
        assert verify(retry)["data"]["task_id"] == task_id
        assert retry.at - first.at >= RETRY_S  # resumed at its due time, not at once
        assert (webhook["status"], webhook["attempts"], webhook["last_status_code"]) == (
            "delivered",
            2,
            200,
        )
        history = webhook["history"]
        assert [(a["attempt"], a["status_code"]) for a in history] == [(1, 500), (2, 200)]
        assert history[0]["next_attempt_at"] is not None and history[1]["next_attempt_at"] is None
        assert all(a["duration_ms"] >= 0 and a["at"] for a in history)
        assert "500" in history[0]["error"] and history[1]["error"] == ""

        # Every state is a committed Kafka record: scheduled, attempted, delivered; and nothing
        # was sent a third time.
        facts = [
            loads(WebhookRecord, value).fact
            for _, value, _ in scan(platform.settings, Topics.of(platform.settings).webhooks)
        ]
        assert facts == ["scheduled", "attempted", "delivered"]
        assert len(receiver.on("/hook")) == 2
    finally:
        receiver.close()
        platform.stop()


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
