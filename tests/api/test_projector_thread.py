"""The API process's projector applies task events on a thread and event loop of its own, not on
the loop that serves the requests (where each batch held up every poll and submission behind
it), and stops with the process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api.services import Services
from api.submit import task_records
from mcp.projector import Projector
from mcp.records import record
from mcp.settings import Settings
from mcp.store import TaskStore
from schemas import AsyncTask, TaskEvent, TaskStatus

pytestmark = pytest.mark.integration

WITHIN_S = 60.0


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WITHIN_S):
        while not condition():
            await asyncio.sleep(0.05)


async def test_the_api_projects_events_off_the_requests_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[tuple[str, asyncio.AbstractEventLoop]] = []
    apply = Projector._apply

    async def recorded(self: Projector, events: list[TaskEvent], *args: Any) -> bool:
        if events:
            applied.append((threading.current_thread().name, asyncio.get_running_loop()))
        return await apply(self, events, *args)

    monkeypatch.setattr(Projector, "_apply", recorded)
    services = Services.build(settings)
    await services.start()
    try:
        await _until(lambda: services.topics_ready and services.producer.ready)
        task = AsyncTask(model="echo", action="generate", payload={"prompt": "hi"})
        event = TaskEvent.of(task, TaskStatus.QUEUED, task=task)
        key = task.task_id.encode()
        await services.producer.publish([record(services.topics.events, key, event)])
        await _until(lambda: bool(applied))
        assert services.projector is not None
        assert services.projector.applied >= 1
    finally:
        await services.stop()
    name, loop = applied[0]
    assert name == "projector"
    assert loop is not asyncio.get_running_loop()
    assert services.projector.thread is not None
    assert not services.projector.thread.is_alive()


async def test_the_api_projector_reads_past_the_queued_events_the_api_wrote_itself(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submission's `queued` event, written to Redis by the API right after its commit, is
    not decoded and applied again by the API's own projector; one whose write failed is."""
    # The projector looks at what it read once both are published (each publish returns after
    # the API's write and its note), as it would a moment later.
    published = threading.Event()
    read_past = Projector._not_applied_here

    def after_publishing(self: Projector, messages: list[Any]) -> list[Any]:
        published.wait(WITHIN_S)
        return read_past(self, messages)

    monkeypatch.setattr(Projector, "_not_applied_here", after_publishing)
    services = Services.build(settings)
    store = TaskStore(settings)
    await services.start()
    try:
        await _until(lambda: services.topics_ready and services.producer.ready)
        projector = services.projector
        assert projector is not None and projector.applied_here is not None
        written, unwritten = (
            AsyncTask(model="echo", action="generate", payload={"n": n}) for n in range(2)
        )
        records, queued = task_records(services, written)
        await services.producer.publish(records, note=[queued])
        assert await store.get(written.task_id) is not None  # written before the answer

        # The next write fails (Redis away for the API's hook): the projector applies it.
        committer = services.committer_store
        assert committer is not None
        write = committer.apply_events

        def away(*_: Any) -> None:
            raise RedisConnectionError("Redis is away")

        monkeypatch.setattr(committer, "apply_events", away)
        records, queued = task_records(services, unwritten)
        await services.producer.publish(records, note=[queued])
        monkeypatch.setattr(committer, "apply_events", write)
        published.set()

        await _until(lambda: projector.applied >= 1)
        shown = await store.get(unwritten.task_id)
        assert shown is not None and shown["status"] == "queued"
        await asyncio.sleep(1.0)  # the projector's next batches, were it to apply more
        assert projector.applied == 1  # the written one was read past
        assert len(projector.applied_here) == 0
    finally:
        published.set()
        await services.stop()
        await store.close()
