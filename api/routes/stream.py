"""`GET /v1/tasks/{id}/stream`: token deltas and lifecycle events as Server-Sent Events.

Entries come from the task's Redis Stream; each SSE `id` is the entry id, so a client that
reconnects with `Last-Event-ID` resumes right after the last entry it saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from api.auth import Caller
from api.contract import WITH_ID, errors
from api.deps import Reader, find_task, services_of
from api.services import Services

router = APIRouter(prefix="/v1/tasks", tags=["stream"])

BLOCK_MS = 1000
KEEPALIVE_EVERY = 15


def sse(entry_id: str, event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"id: {entry_id}\nevent: {event}\n{lines}\n".encode()


async def _events(
    services: Services, task_id: str, caller: Caller, last_id: str, request: Request
) -> AsyncIterator[bytes]:
    quiet = 0
    while not await request.is_disconnected():
        entries = await services.store.read_stream(task_id, last_id, BLOCK_MS)
        if not entries:
            view = await find_task(services, task_id, caller)
            if view.status.terminal and not await services.store.has_stream(task_id):
                # A task without a token stream still ends its stream with its final state.
                body = {"status": view.status.value, "attempt": view.attempts}
                yield sse(f"{last_id}-end", "end", orjson.dumps(body).decode())
                return
            quiet += 1
            if quiet % KEEPALIVE_EVERY == 0:
                yield b": keep-alive\n\n"
            continue
        for entry_id, entry in entries:
            last_id = entry_id
            yield sse(entry_id, entry.type, orjson.dumps(entry.event_data()).decode())
            if entry.type == "end":
                return


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


@router.get(
    "/{task_id}/stream",
    response_class=EventStream,
    responses={
        200: {"description": "Server-Sent Events: `token`, `status`, `end`"},
        **errors(*WITH_ID),
    },
)
async def stream(
    task_id: str,
    request: Request,
    caller: Reader,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventStream:
    services = services_of(request)
    await find_task(services, task_id, caller)
    start = last_event_id if last_event_id and "-" in last_event_id else "0-0"
    if start.endswith("-end"):
        start = start[: -len("-end")]
    return EventStream(
        _events(services, task_id, caller, start, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
