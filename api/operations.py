"""What a caller does to a task, whatever the front door (HTTP routes, gRPC): cancel it, wait
for its outcome. Finding a task the caller may see is `api.deps.find_task`."""

from __future__ import annotations

import asyncio
import contextlib
import time

from api.auth import Caller
from api.deps import find_task, owned_task
from api.services import Services
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
    """The task once it is terminal, or None when `wait_s` passed first.

    Woken by the task's end (`mcp.endings`), and reads the task again every second anyway.
    While the process has no subscription to the ends, it polls: often at first (a fast model
    answers in milliseconds), then every 100 ms."""
    deadline = time.monotonic() + wait_s
    endings = services.endings
    delay = FIRST_POLL_S
    with endings.watch(task_id) as ended:
        while True:
            ended.clear()  # before the read: an end published after it sets it again
            view = await services.store.view(task_id)
            if view is not None and view.status.terminal:
                return await find_task(services, task_id, caller)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            pause = RECHECK_S if endings.subscribed else delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), min(pause, left))
            delay = min(delay * 1.5, LAST_POLL_S)
