"""The asynchronous client: the same calls as `Client`, awaited.

async with AsyncClient() as client:
    task = await client.submit("glm-tiny", "generate", {"prompt": "Hi"})
    async for token in client.tokens(task.task_id):
        print(token, end="")
    print((await client.wait(task.task_id)).result)
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TypeVar, Unpack

import httpx

from autoglm_client import calls
from autoglm_client.calls import Call, TaskOptions, TaskRequest
from autoglm_client.config import ClientConfig
from autoglm_client.errors import APIError, ConnectionFailed, error_from
from autoglm_client.models import (
    Accepted,
    Batch,
    BatchResultLine,
    BatchSubmitted,
    FileObject,
    JsonDict,
    StreamEvent,
    Task,
    TaskEventRecord,
    TaskStatus,
    WebhookSecrets,
    Worker,
)
from autoglm_client.retry import RetryPolicy
from autoglm_client.sse import SSEDecoder
from autoglm_client.waiting import Deadline

T = TypeVar("T")


class AsyncClient:
    """An asyncio client of the autoglm-mcp API; share one per event loop."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(base_url, api_key, timeout)
        self.retry = retry or RetryPolicy()
        self._http = http_client or httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=self.config.timeout,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # Transport ------------------------------------------------------------------------------

    async def _send(self, call: Call[T]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    content=call.content,
                    files=call.files,
                    params=call.params,
                    headers=call.headers,
                    timeout=call.timeout or httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                delay = self.retry.after_error(attempt, exc, call.idempotent)
                if delay is None:
                    raise ConnectionFailed(f"{call.method} {call.path}: {exc!r}") from exc
            else:
                if response.status_code < 400:
                    return response
                delay = self.retry.after_response(attempt, response)
                if delay is None:
                    raise error_from(response)
            await asyncio.sleep(delay)
            attempt += 1

    async def call(self, call: Call[T]) -> T:
        """Send one prepared call (with retries) and read its answer."""
        return call.parse(await self._send(call))

    # Tasks ----------------------------------------------------------------------------------

    async def submit(
        self,
        model: str,
        action: str = "generate",
        payload: JsonDict | None = None,
        **options: Unpack[TaskOptions],
    ) -> Accepted:
        """Submit a task; its Idempotency-Key (fresh unless given) makes retries safe."""
        request = TaskRequest(model=model, action=action, payload=payload or {}, **options)
        return await self.call(calls.submit(request))

    async def get(self, task_id: str) -> Task:
        return await self.call(calls.get(task_id))

    async def cancel(self, task_id: str) -> Task:
        return await self.call(calls.cancel(task_id))

    async def redeliver_webhook(self, task_id: str) -> Task:
        return await self.call(calls.redeliver_webhook(task_id))

    async def infer(
        self,
        model: str,
        action: str = "generate",
        payload: JsonDict | None = None,
        *,
        wait_s: float = 30.0,
        **options: Unpack[TaskOptions],
    ) -> Task | Accepted:
        """Submit and have the server wait up to `wait_s`: the finished task, or `Accepted`."""
        request = TaskRequest(model=model, action=action, payload=payload or {}, **options)
        return await self.call(calls.infer(request, wait_s, self.config.timeout))

    async def run(
        self,
        model: str,
        action: str = "generate",
        payload: JsonDict | None = None,
        *,
        timeout: float | None = None,
        **options: Unpack[TaskOptions],
    ) -> Task:
        """Submit and wait for the finished task."""
        accepted = await self.submit(model, action, payload, **options)
        return await self.wait(accepted.task_id, timeout=timeout)

    async def events(self, task_id: str) -> list[TaskEventRecord]:
        """The task's lifecycle timeline."""
        return await self.call(calls.events(task_id))

    async def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
        max_items: int | None = None,
    ) -> AsyncIterator[Task]:
        """The project's tasks, newest first, fetching pages as the iteration goes."""
        cursor: str | None = None
        seen = 0
        while True:
            page = await self.call(
                calls.list_page(
                    status=status,
                    model=model,
                    action=action,
                    since=since,
                    until=until,
                    limit=page_size,
                    cursor=cursor,
                )
            )
            for task in page.tasks:
                if max_items is not None and seen >= max_items:
                    return
                seen += 1
                yield task
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # Streaming and waiting -----------------------------------------------------------------

    async def stream(
        self, task_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The task's Server-Sent Events (`status`, `token`, `end`) until `end`; a broken
        connection is resumed where it stopped with `Last-Event-ID`."""
        decoder = SSEDecoder(last_event_id=last_event_id)
        deadline = Deadline(task_id, timeout)
        attempt = 0
        while True:
            path, headers = calls.stream_request(task_id, decoder.last_event_id)
            try:
                async with self._http.stream(
                    "GET", path, headers=headers, timeout=deadline.stream_timeout(self.config)
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        delay = self.retry.after_response(attempt, response)
                        if delay is None:
                            raise error_from(response)
                        await asyncio.sleep(deadline.clip(delay))
                        deadline.check()
                        attempt += 1
                        continue
                    async for line in response.aiter_lines():
                        sse = decoder.feed(line)
                        if sse is None:
                            continue
                        attempt = 0
                        event = calls.stream_event(sse)
                        yield event
                        if event.event == "end":
                            return
            except httpx.TransportError as exc:
                deadline.check()
                delay = self.retry.after_error(attempt, exc, idempotent=True)
                if delay is None:
                    raise ConnectionFailed(f"stream of {task_id}: {exc!r}") from exc
                await asyncio.sleep(deadline.clip(delay))
            deadline.check()
            attempt += 1

    async def tokens(self, task_id: str, *, timeout: float | None = None) -> AsyncIterator[str]:
        """The generated text of a `generate` task, delta by delta, as it is produced."""
        async for event in self.stream(task_id, timeout=timeout):
            if event.event == "token":
                yield event.delta

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[StreamEvent], Awaitable[None] | None] | None = None,
    ) -> Task:
        """Block until the task is finished and return it. Listens to the task's event stream
        (server push); polls with back-off only where the server does not stream."""
        deadline = Deadline(task_id, timeout)
        task = await self.get(task_id)
        if task.done:
            return task
        try:
            async for event in self.stream(task_id, timeout=deadline.remaining()):
                if on_event is not None:
                    reaction = on_event(event)
                    if reaction is not None:
                        await reaction
        except APIError as exc:
            if not calls.streaming_disabled(exc):
                raise
        # The end of the stream can arrive a moment before the task's state shows it.
        delay = 0.02
        while not (task := await self.get(task_id)).done:
            deadline.check()
            await asyncio.sleep(deadline.clip(delay))
            delay = min(delay * 1.5, 1.0)
        return task

    # Batches --------------------------------------------------------------------------------

    async def submit_batch(self, tasks: Iterable[TaskRequest | JsonDict]) -> BatchSubmitted:
        """Up to 1,000 tasks in one committed transaction, answered per item."""
        return await self.call(calls.submit_batch(calls.requests_of(tasks)))

    async def create_batch(self, jsonl: bytes, *, idempotency_key: str | None = None) -> Batch:
        """Upload a JSONL batch (`{"custom_id", "body": <task>}` per line)."""
        return await self.call(calls.create_batch(jsonl, idempotency_key=idempotency_key))

    async def get_batch(self, batch_id: str) -> Batch:
        return await self.call(calls.get_batch(batch_id))

    async def batch_results(self, batch_id: str) -> builtins.list[BatchResultLine]:
        return await self.call(calls.batch_results(batch_id))

    # Project, platform ----------------------------------------------------------------------

    async def webhook_secret(self) -> WebhookSecrets:
        return await self.call(calls.webhook_secret())

    async def rotate_webhook_secret(self, *, overlap_s: float | None = None) -> WebhookSecrets:
        """A new signing secret; the old one keeps signing for `overlap_s` (server default)."""
        return await self.call(calls.rotate_webhook_secret(overlap_s))

    async def workers(self) -> builtins.list[Worker]:
        return await self.call(calls.workers())

    async def queues(self) -> builtins.list[JsonDict]:
        return await self.call(calls.queues())

    async def models(self) -> builtins.list[JsonDict]:
        return await self.call(calls.models())

    async def upload_file(
        self, content: bytes, filename: str = "file", content_type: str = "application/octet-stream"
    ) -> FileObject:
        return await self.call(calls.upload_file(content, filename, content_type))

    async def get_file(self, file_id: str) -> FileObject:
        return await self.call(calls.get_file(file_id))

    async def delete_file(self, file_id: str) -> None:
        await self.call(calls.delete_file(file_id))
