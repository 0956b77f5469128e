"""What a caller does to a task, whatever the front door (HTTP routes, gRPC): cancel it, wait
for its outcome. Finding a task the caller may see is `api.deps.find_task`."""

from __future__ import annotations

import asyncio
import contextlib
import time

from api.auth import Caller
from api.deps import find_task, owned_task
from api.services import Services
from mcp.errors import TaskNotFound
from mcp.records import content_type_for, record
from schemas import TaskEvent, TaskView

FIRST_POLL_S = 0.002
LAST_POLL_S = 0.1
MAX_WAIT_S = 300.0  # the longest wait a request may ask for
RECHECK_S = 1.0  # a waiter woken by the task's end reads it again this often anyway


async def cancel_task(services: Services, task_id: str, caller: Caller) -> TaskView:
    """Cancel the caller's task; a finished one is answered as it is."""
    view, view_project = await owned_task(services, task_id, caller)
    if view.status.terminal:
        return view
    # The request is durable in task-events first, so a replay restores it.
    event = TaskEvent.cancel_request(task_id, view.model, view.action, view_project)
    wire = content_type_for(services.settings.kafka.encoding)
    await services.producer.publish([record(services.topics.events, task_id.encode(), event, wire)])
    await services.store.cancel(task_id, services.settings.redis.task_retention_s)
    return await find_task(services, task_id, caller)


async def wait_outcome(
    services: Services, task_id: str, caller: Caller, wait_s: float
) -> TaskView | None:
    """The task once it is terminal, or None when `wait_s` passed first."""
    view = await _watch(services, task_id, caller, wait_s, must_exist=False)
    return view if view is not None and view.status.terminal else None


async def watch_task(services: Services, task_id: str, caller: Caller, wait_s: float) -> TaskView:
    """The caller's task as soon as it is terminal, or as it is when `wait_s` runs out; a task
    the caller cannot see is TaskNotFound at once (a long poll: `GET /v1/tasks/{id}?wait=N`)."""
    view = await _watch(services, task_id, caller, wait_s, must_exist=True)
    assert view is not None  # not there: find_task raised TaskNotFound
    return view


async def _watch(
    services: Services, task_id: str, caller: Caller, wait_s: float, must_exist: bool
) -> TaskView | None:
    """The task when terminal, or as it is when `wait_s` runs out (None: not there).

    Woken by the task's end (`mcp.endings`), and reads the task again every second anyway.
    While the process has no subscription to the ends, it polls: often at first (a fast model
    answers in milliseconds), then every 100 ms. Each look is one read of the task, the one a
    poll makes: the watch is registered before it, so an end published after it wakes us."""
    deadline = time.monotonic() + wait_s
    endings = services.endings
    delay = FIRST_POLL_S
    with endings.watch(task_id) as ended:
        while True:
            ended.clear()  # before the read: an end published after it sets it again
            view = await _look(services, task_id, caller, must_exist)
            if view is not None and view.status.terminal:
                return view
            left = deadline - time.monotonic()
            if left <= 0:
                return view
            pause = RECHECK_S if endings.subscribed else delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), min(pause, left))
            delay = min(delay * 1.5, LAST_POLL_S)


async def _look(
    services: Services, task_id: str, caller: Caller, must_exist: bool
) -> TaskView | None:
    if must_exist:
        return await find_task(services, task_id, caller)
    try:
        return await find_task(services, task_id, caller)
    except TaskNotFound:
        return None
