"""`started` and `output` webhooks, for tasks that ask for them."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest
import redis

from mcp.names import Keys
from mcp.settings import Settings
from schemas import AsyncTask, TaskEvent, TaskStatus
from tests.mcp.webhooks.conftest import (
    DispatcherProcess,
    Publisher,
    Receiver,
    result,
    verify,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_started_and_throttled_output_webhooks(
    settings: Settings,
    redis_client: redis.Redis,
    receivers: Callable[..., Receiver],
    dispatcher: Callable[..., DispatcherProcess],
    publisher: Publisher,
) -> None:
    hook = receivers()
    task = AsyncTask(
        model="echo",
        action="generate",
        payload={"prompt": "hi"},
        callback_url=hook.url("/events"),  # type: ignore[arg-type]
        webhook_events_filter=("started", "output", "completed"),
    )
    quiet = AsyncTask(model="echo", action="generate", callback_url=hook.url("/quiet"))  # type: ignore[arg-type]
    events = publisher.topics.events
    dispatcher()
    publisher.publish(
        events,
        (task.task_id, TaskEvent(task_id=task.task_id, status=TaskStatus.QUEUED, task=task)),
        (quiet.task_id, TaskEvent(task_id=quiet.task_id, status=TaskStatus.QUEUED, task=quiet)),
    )
    publisher.publish(
        events,
        (task.task_id, TaskEvent(task_id=task.task_id, status=TaskStatus.RUNNING, attempt=1)),
        (quiet.task_id, TaskEvent(task_id=quiet.task_id, status=TaskStatus.RUNNING, attempt=1)),
    )
    wait_for(lambda: len(hook.all()) >= 1, what="task.started")

    stream = Keys.of(settings).stream(task.task_id)
    for delta in ("Hel", "lo", " wor", "ld"):
        redis_client.xadd(stream, {"delta": delta})
        time.sleep(0.15)
    wait_for(
        lambda: (
            "".join(
                verify(r)["data"]["result"]["text"]
                for r in hook.all()
                if r.json()["type"] == "task.output"
            )
            == "Hello world"
        ),
        what="the whole output",
    )
    done = result(str(task.callback_url)).model_copy(
        update={"task_id": task.task_id, "webhook_events_filter": task.webhook_events_filter}
    )
    publisher.results(done)
    wait_for(lambda: hook.all()[-1].json()["type"] == "task.succeeded", what="task.succeeded")

    received = hook.all()
    kinds = [verify(r)["type"] for r in received]
    assert kinds[0] == "task.started" and kinds[-1] == "task.succeeded"
    assert set(kinds[1:-1]) == {"task.output"}
    assert received[0].webhook_id == f"msg_{task.task_id}_started"
    started = received[0].json()["data"]
    assert (started["status"], started["attempts"], started["task_id"]) == (
        "running",
        1,
        task.task_id,
    )

    outputs = received[1:-1]
    assert [r.webhook_id for r in outputs] == [
        f"msg_{task.task_id}_output_{n}" for n in range(1, len(outputs) + 1)
    ]
    assert [r.json()["data"]["result"]["seq"] for r in outputs] == list(range(1, len(outputs) + 1))
    assert 2 <= len(outputs) <= 4
    gaps = [b.at - a.at for a, b in itertools.pairwise(outputs)]
    assert all(gap >= 0.4 for gap in gaps), gaps
    assert all(r.path == "/events" for r in received)
