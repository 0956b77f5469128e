"""The long poll (`GET /v1/tasks/{id}?wait=N`, `api.operations.watch_task`) against a real Redis:
it answers with the task once it ends, reading it once before the wait and once after the end,
as a poll would; a task the caller cannot see is not found at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api import operations
from api.auth import Caller, Role
from api.auth.guard import ANONYMOUS
from api.operations import watch_task
from api.services import Services
from mcp.errors import TaskNotFound
from mcp.settings import Settings
from mcp.store import SyncTaskStore
from schemas import AsyncTask, TaskEvent, TaskResult, TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WOKEN_S = 5.0  # how long the answer may take once the task ended (a lost wake-up never comes)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    found = Services.build(settings)
    found.endings.start()
    # Subscribed before a watch starts: until then a watch polls, and reads the task more often
    # than the tests count (a loaded machine took longer than the first look to subscribe).
    await _until(lambda: found.endings.subscribed)
    yield found
    await found.endings.close()
    await found.store.redis.aclose()


def _reads(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The task reads the waiter made, as each returns (the store's read methods, still reading
    Redis)."""
    seen: list[str] = []

    def counted(name: str, read: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            found = await read(*args, **kwargs)
            seen.append(name)
            return found

        return call

    for name in ("view", "get", "get_with_webhooks"):
        monkeypatch.setattr(services.store, name, counted(name, getattr(services.store, name)))
    return seen


async def _until(condition: Callable[[], bool]) -> None:
    async def loop() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), WOKEN_S)


async def test_a_long_poll_reads_the_task_once_before_and_once_after_its_end(
    settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "RECHECK_S", 60.0)  # no periodic re-read in this test
    store = SyncTaskStore(settings)
    task = AsyncTask(task_id="polled", model="echo", action="generate", created_at=T0)
    running = [
        TaskEvent.of(task, TaskStatus.QUEUED, at=T0, task=task),
        TaskEvent.of(task, TaskStatus.RUNNING, at=T0, attempt=1, worker_id="echo.0"),
    ]
    await asyncio.to_thread(store.apply_events, running)
    reads = _reads(services, monkeypatch)
    waiter = asyncio.create_task(watch_task(services, task.task_id, ANONYMOUS, 30))
    await _until(lambda: len(reads) == 1)  # it read the task running, and waits
    assert services.endings.waiting == 1 and not waiter.done()
    started = T0 + timedelta(milliseconds=5)
    result = TaskResult.of(
        task,
        TaskStatus.SUCCEEDED,
        1,
        started_at=started,
        finished_at=started,
        result={"echo": 1},
        worker_id="echo.0",
    )
    await asyncio.to_thread(store.apply_results, [result])
    view = await asyncio.wait_for(waiter, WOKEN_S)
    assert view.status is TaskStatus.SUCCEEDED and view.result == {"echo": 1}
    assert len(reads) == 2, reads


async def test_a_task_the_caller_cannot_see_is_not_found_at_once(
    settings: Settings, services: Services
) -> None:
    store = SyncTaskStore(settings)
    task = AsyncTask(
        task_id="theirs", model="echo", action="generate", project="other", created_at=T0
    )
    await asyncio.to_thread(
        store.apply_events, [TaskEvent.of(task, TaskStatus.QUEUED, at=T0, task=task)]
    )
    developer = Caller("mine", Role.DEVELOPER, "key:test")
    for task_id in ("theirs", "nowhere"):
        with pytest.raises(TaskNotFound):
            await asyncio.wait_for(watch_task(services, task_id, developer, 30), WOKEN_S)
    assert services.endings.waiting == 0
