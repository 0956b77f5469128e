"""The API process's projector applies task events on a thread and event loop of its own, not on
the loop that serves the requests (where each batch held up every poll and submission behind
it), and stops with the process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from api.services import Services
from mcp.projector import Projector
from mcp.records import record
from mcp.settings import Settings
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
