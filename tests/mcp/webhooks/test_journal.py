"""Redis holds a projection of `webhook-deliveries`: what Kafka has, a dispatcher delivers."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from mcp.names import Keys
from mcp.settings import Settings
from schemas import WebhookRecord, utcnow
from tests.harness import PrivateRedis
from tests.mcp.webhooks.conftest import (
    DispatcherProcess,
    Publisher,
    Receiver,
    Reply,
    result,
    verify,
    wait_for,
)
from tests.mcp.webhooks.test_delivery import view

pytestmark = pytest.mark.integration


def applied(settings: Settings) -> dict[bytes, int]:
    client = redis.Redis.from_url(settings.redis.url)
    try:
        raw = client.hgetall(Keys.of(settings).webhook_applied)
        return {k: int(v) for k, v in raw.items()}
    finally:
        client.close()


def test_a_running_dispatcher_rebuilds_what_redis_lost(
    settings: Settings,
    receivers: type[Receiver],
    publisher: Publisher,
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    own = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": private_redis.url})}
    )
    hook = receivers()
    first = result(hook.script("/first", Reply(503), Reply(200)))
    dispatcher = DispatcherProcess(
        own, tmp_path / "dispatcher.log", webhooks={"schedule_s": [0, 3]}
    )
    dispatcher.start()
    try:
        publisher.results(first)
        wait_for(lambda: view(own, first.task_id).status == "retrying", what="the retry")
        # Both records (scheduled, attempted: offsets 0 and 2, a commit marker between) were
        # projected, so nothing but a rebuild can bring them back.
        wait_for(lambda: max(applied(own).values(), default=0) >= 3, what="the projection")
        redis.Redis.from_url(private_redis.url).flushall()
        # Delivered before the loss, then sent again after it: at-least-once, same id.
        second = result(hook.script("/second", Reply(200)))
        publisher.results(second)

        wait_for(lambda: len(hook.on("/first")) == 2, 30, "the retry after the loss")
        wait_for(lambda: view(own, first.task_id).status == "delivered", what="the record")
        attempts = hook.on("/first")
        assert {a.webhook_id for a in attempts} == {f"msg_{first.task_id}_succeeded"}
        assert attempts[1].at - attempts[0].at >= 3.0
        shown = view(own, first.task_id)
        assert (shown.attempts, [a.status_code for a in shown.history]) == (2, [503, 200])
        wait_for(lambda: view(own, second.task_id).status == "delivered", what="the second")
        assert len(hook.on("/second")) == 1
        assert "rebuilding" in dispatcher.log()
    finally:
        dispatcher.stop()


def test_a_record_committed_but_never_applied_is_delivered(
    settings: Settings,
    receivers: type[Receiver],
    dispatcher: type[DispatcherProcess],
    publisher: Publisher,
) -> None:
    # As if a dispatcher died between its Kafka commit and its Redis write.
    hook = receivers()
    state = WebhookRecord.scheduled(
        webhook_id="msg_orphan_succeeded",
        task_id="orphan",
        project="default",
        type="task.succeeded",
        url=hook.url("/orphan"),
        body='{"type":"task.succeeded","timestamp":"2026-01-01T00:00:00Z","data":{}}',
        at=utcnow(),
    )
    publisher.publish(publisher.topics.webhooks, (state.webhook_id, state))
    dispatcher()
    wait_for(lambda: len(hook.on("/orphan")) == 1, what="the orphan delivery")
    assert verify(hook.on("/orphan")[0])["type"] == "task.succeeded"
    wait_for(lambda: view(settings, "orphan").status == "delivered", what="its new state")
