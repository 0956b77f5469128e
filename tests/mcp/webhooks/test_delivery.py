"""Promise 4 against real Kafka, Redis, receivers and a dispatcher process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from mcp.settings import Settings
from mcp.webhooks.store import WebhookStore
from schemas import TaskStatus, WebhookView
from tests.mcp.webhooks.conftest import (
    OLD_SECRET,
    SECRET,
    DispatcherProcess,
    Publisher,
    Receiver,
    Reply,
    result,
    verify,
    wait_for,
)

pytestmark = pytest.mark.integration

Receivers = Callable[..., Receiver]
Dispatchers = Callable[..., DispatcherProcess]


def view(settings: Settings, task_id: str) -> WebhookView:
    async def read() -> WebhookView:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            return await WebhookStore(client, settings).view(task_id)
        finally:
            await client.aclose()

    return asyncio.run(read())


def redeliver(settings: Settings, task_id: str) -> bool:
    async def run() -> bool:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            return await WebhookStore(client, settings).redeliver(task_id)
        finally:
            await client.aclose()

    return asyncio.run(run())


def dead(settings: Settings) -> list[str]:
    async def read() -> list[str]:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            return await WebhookStore(client, settings).dead()
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_completion_webhooks_are_signed_and_shaped_like_the_poll_body(
    settings: Settings, receivers: Receivers, dispatcher: Dispatchers, publisher: Publisher
) -> None:
    hook = receivers()
    succeeded = result(hook.url("/ok"))
    failed = result(hook.url("/failed"), TaskStatus.FAILED, error={"code": "boom", "message": "x"})
    rotating = result(hook.url("/rotating"), project="rotating")
    silent = result(None)
    started_only = result(hook.url("/started-only"), webhook_events_filter=("started",))
    dispatcher()
    publisher.results(silent, started_only, succeeded, failed, rotating)

    wait_for(lambda: len(hook.all()) >= 4, what="four webhooks")
    by_path = {r.path: r for r in hook.all()}
    assert set(by_path) == {"/ok", "/failed", "/rotating", "/started-only"}
    # The result was read before any `running` event: it still tells that the task started.
    assert verify(by_path["/started-only"])["type"] == "task.started"

    body = verify(by_path["/ok"])
    assert by_path["/ok"].webhook_id == f"msg_{succeeded.task_id}_succeeded"
    assert body["type"] == "task.succeeded"
    data = body["data"]
    assert data["task_id"] == succeeded.task_id
    assert (data["status"], data["model"], data["action"]) == ("succeeded", "echo", "generate")
    assert data["result"] == {"text": "hello"} and data["metadata"] == {"order": 7}
    assert {"created_at", "started_at", "finished_at", "attempts", "error", "webhook"} <= set(data)

    body = verify(by_path["/failed"])
    assert body["type"] == "task.failed" and body["data"]["error"]["code"] == "boom"

    rotating_hook = by_path["/rotating"]
    assert len(rotating_hook.headers["webhook-signature"].split(" ")) == 2
    assert verify(rotating_hook, SECRET) == verify(rotating_hook, OLD_SECRET)

    wait_for(lambda: view(settings, succeeded.task_id).status == "delivered", what="view")
    shown = view(settings, succeeded.task_id)
    assert (shown.attempts, shown.last_status_code, shown.next_attempt_at) == (1, 200, None)
    assert view(settings, silent.task_id).status == "none"
    assert len(hook.all()) == 4


def test_failing_three_times_then_succeeding_takes_four_attempts_with_one_id(
    settings: Settings, receivers: Receivers, dispatcher: Dispatchers, publisher: Publisher
) -> None:
    hook = receivers()
    url = hook.script("/flaky", Reply(500), Reply(502), Reply(404), Reply(204))
    task = result(url)
    dispatcher()
    publisher.results(task)

    wait_for(lambda: view(settings, task.task_id).status == "delivered", what="delivery")
    attempts = hook.on("/flaky")
    assert len(attempts) == 4
    assert {a.webhook_id for a in attempts} == {f"msg_{task.task_id}_succeeded"}
    assert len({a.body for a in attempts}) == 1
    for attempt in attempts:
        verify(attempt)
    shown = view(settings, task.task_id)
    assert (shown.status, shown.attempts, shown.last_status_code) == ("delivered", 4, 204)


def test_gone_stops_exhaustion_fails_and_redeliver_sends_again(
    settings: Settings, receivers: Receivers, dispatcher: Dispatchers, publisher: Publisher
) -> None:
    hook = receivers()
    gone = result(hook.script("/gone", Reply(410), Reply(200)))
    broken = result(hook.script("/broken", Reply(500), Reply(500), Reply(500), Reply(200)))
    dispatcher(webhooks={"schedule_s": [0, 0.2, 0.2]})
    publisher.results(gone, broken)

    wait_for(lambda: view(settings, broken.task_id).status == "failed", what="exhaustion")
    wait_for(lambda: view(settings, gone.task_id).status == "failed", what="410")
    assert len(hook.on("/gone")) == 1
    assert len(hook.on("/broken")) == 3
    shown = view(settings, gone.task_id)
    assert (shown.attempts, shown.last_status_code, shown.next_attempt_at) == (1, 410, None)
    assert sorted(dead(settings)) == sorted(
        [f"msg_{gone.task_id}_succeeded", f"msg_{broken.task_id}_succeeded"]
    )

    assert redeliver(settings, gone.task_id) and redeliver(settings, broken.task_id)
    wait_for(lambda: view(settings, gone.task_id).status == "delivered", what="redelivery")
    wait_for(lambda: view(settings, broken.task_id).status == "delivered", what="redelivery")
    assert [a.webhook_id for a in hook.on("/gone")] == [f"msg_{gone.task_id}_succeeded"] * 2
    assert len(hook.on("/broken")) == 4
    assert view(settings, broken.task_id).attempts == 4
    assert dead(settings) == []
    assert redeliver(settings, "no-such-task") is False


def test_retry_after_is_honoured_on_429_and_503(
    settings: Settings, receivers: Receivers, dispatcher: Dispatchers, publisher: Publisher
) -> None:
    hook = receivers()
    limited = result(hook.script("/429", Reply(429, {"Retry-After": "2"}), Reply(200)))
    unavailable = result(hook.script("/503", Reply(503, {"Retry-After": "1"}), Reply(200)))
    dispatcher(webhooks={"schedule_s": [0, 0.05, 0.05]})
    publisher.results(limited, unavailable)

    wait_for(lambda: view(settings, limited.task_id).status == "delivered", what="429 retry")
    wait_for(lambda: view(settings, unavailable.task_id).status == "delivered", what="503")
    first, second = hook.on("/429")
    assert second.at - first.at >= 2.0
    first, second = hook.on("/503")
    assert second.at - first.at >= 1.0


def test_a_hanging_receiver_does_not_delay_a_healthy_one(
    settings: Settings, receivers: Receivers, dispatcher: Dispatchers, publisher: Publisher
) -> None:
    hanging = receivers(Reply(hang_s=60))
    failing = receivers(Reply(500))
    healthy = receivers()
    stuck = [result(hanging.url(f"/h{i}")) for i in range(20)]
    broken = [result(failing.url(f"/f{i}")) for i in range(10)]
    fine = [result(healthy.url(f"/ok{i}")) for i in range(20)]
    dispatcher(
        webhooks={
            "schedule_s": [0, 0.2, 0.2, 0.2],
            "timeout_s": 60,
            "max_concurrency": 8,
            "per_host_concurrency": 2,
        }
    )
    publisher.results(*stuck)
    publisher.results(*broken)
    wait_for(lambda: len(hanging.all()) >= 2, what="the hanging receiver to be reached")
    publisher.results(*fine)

    wait_for(lambda: len(healthy.all()) == 20, what="every healthy delivery")
    # Every healthy webhook arrived while the first hanging requests were still open: the
    # hanging host held its own two slots and nothing more.
    assert len(hanging.all()) == 2
    assert all(view(settings, t.task_id).status == "pending" for t in stuck)
    # An attempt's outcome reaches Redis after its journal commit, batched under load (at most
    # once per `webhooks.journal_window_ms`): arrived first, recorded a moment later.
    wait_for(
        lambda: all(view(settings, t.task_id).status == "delivered" for t in fine),
        what="every healthy delivery recorded",
    )
    for received in healthy.all():
        verify(received)


def test_pending_retries_survive_sigkill(
    settings: Settings, receivers: Receivers, dispatcher: Dispatchers, publisher: Publisher
) -> None:
    hook = receivers()
    slow = receivers()
    retrying = [result(hook.script(f"/r{i}", Reply(503), Reply(200))) for i in range(5)]
    in_flight = result(slow.script("/slow", Reply(hang_s=30), Reply(200)))
    first = dispatcher(webhooks={"schedule_s": [0, 4, 4]})
    publisher.results(*retrying, in_flight)

    wait_for(lambda: len(hook.all()) == 5 and len(slow.all()) == 1, what="first attempts")
    wait_for(
        lambda: all(view(settings, t.task_id).status == "retrying" for t in retrying),
        what="retries to be scheduled",
    )
    first.kill()
    unsent = result(hook.script("/after-kill", Reply(200)))
    publisher.results(unsent)

    dispatcher(webhooks={"schedule_s": [0, 4, 4]})
    wait_for(lambda: len(hook.all()) == 11, what="every pending webhook after restart")
    wait_for(lambda: len(slow.all()) == 2, what="the in-flight webhook after restart")
    for task in retrying:
        attempts = [r for r in hook.all() if r.json()["data"]["task_id"] == task.task_id]
        assert len(attempts) == 2
        assert {a.webhook_id for a in attempts} == {f"msg_{task.task_id}_succeeded"}
        for attempt in attempts:
            verify(attempt)
    assert {r.webhook_id for r in slow.all()} == {f"msg_{in_flight.task_id}_succeeded"}
    assert [verify(r)["data"]["task_id"] for r in hook.on("/after-kill")] == [unsent.task_id]
    wait_for(
        lambda: all(
            view(settings, t.task_id).status == "delivered" for t in [*retrying, in_flight, unsent]
        ),
        what="every delivery delivered",
    )
