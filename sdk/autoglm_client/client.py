"""The synchronous client.

from autoglm_client import Client

with Client() as client:                       # AUTOGLM_URL, AUTOGLM_API_KEY
    task = client.submit("glm-tiny", "generate", {"prompt": "Hi"})
    for token in client.tokens(task.task_id):
        print(token, end="")
    print(client.wait(task.task_id).result)
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator
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


class Client:
    """A client of the autoglm-mcp API; safe to share between threads."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(base_url, api_key, timeout)
        self.retry = retry or RetryPolicy()
        self._http = http_client or httpx.Client(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=self.config.timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Transport ------------------------------------------------------------------------------

    def _send(self, call: Call[T]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
            time.sleep(delay)
            attempt += 1

    def call(self, call: Call[T]) -> T:
        """Send one prepared call (with retries) and read its answer."""
        return call.parse(self._send(call))

    # Tasks ----------------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        action: str = "generate",
        payload: JsonDict | None = None,
        **options: Unpack[TaskOptions],
    ) -> Accepted:
        """Submit a task; its Idempotency-Key (fresh unless given) makes retries safe."""
        request = TaskRequest(model=model, action=action, payload=payload or {}, **options)
        return self.call(calls.submit(request))

    def get(self, task_id: str) -> Task:
        return self.call(calls.get(task_id))

    def cancel(self, task_id: str) -> Task:
        return self.call(calls.cancel(task_id))

    def redeliver_webhook(self, task_id: str) -> Task:
        return self.call(calls.redeliver_webhook(task_id))

    def infer(
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
        return self.call(calls.infer(request, wait_s, self.config.timeout))

    def run(
        self,
        model: str,
        action: str = "generate",
        payload: JsonDict | None = None,
        *,
        timeout: float | None = None,
        **options: Unpack[TaskOptions],
    ) -> Task:
        """Submit and wait for the finished task."""
        return self.wait(self.submit(model, action, payload, **options).task_id, timeout=timeout)

    def events(self, task_id: str) -> list[TaskEventRecord]:
        """The task's lifecycle timeline."""
        return self.call(calls.events(task_id))

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
        max_items: int | None = None,
    ) -> Iterator[Task]:
        """The project's tasks, newest first, fetching pages as the iteration goes."""
        cursor: str | None = None
        seen = 0
        while True:
            page = self.call(
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

    def stream(
        self, task_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[StreamEvent]:
        """The task's Server-Sent Events (`status`, `token`, `end`) until `end`; a broken
        connection is resumed where it stopped with `Last-Event-ID`."""
        decoder = SSEDecoder(last_event_id=last_event_id)
        deadline = Deadline(task_id, timeout)
        attempt = 0
        while True:
            path, headers = calls.stream_request(task_id, decoder.last_event_id)
            try:
                with self._http.stream(
                    "GET", path, headers=headers, timeout=deadline.stream_timeout(self.config)
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        delay = self.retry.after_response(attempt, response)
                        if delay is None:
                            raise error_from(response)
                        time.sleep(deadline.clip(delay))
                        deadline.check()
                        attempt += 1
                        continue
                    for line in response.iter_lines():
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
                time.sleep(deadline.clip(delay))
            deadline.check()
            attempt += 1

    def tokens(self, task_id: str, *, timeout: float | None = None) -> Iterator[str]:
        """The generated text of a `generate` task, delta by delta, as it is produced."""
        for event in self.stream(task_id, timeout=timeout):
            if event.event == "token":
                yield event.delta

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
    ) -> Task:
        """Block until the task is finished and return it. Listens to the task's event stream
        (server push); polls with back-off only where the server does not stream."""
        deadline = Deadline(task_id, timeout)
        task = self.get(task_id)
        if task.done:
            return task
        try:
            for event in self.stream(task_id, timeout=deadline.remaining()):
                if on_event is not None:
                    on_event(event)
        except APIError as exc:
            if not calls.streaming_disabled(exc):
                raise
        # The end of the stream can arrive a moment before the task's state shows it.
        delay = 0.02
        while not (task := self.get(task_id)).done:
            deadline.check()
            time.sleep(deadline.clip(delay))
            delay = min(delay * 1.5, 1.0)
        return task

    # Batches --------------------------------------------------------------------------------

    def submit_batch(self, tasks: Iterable[TaskRequest | JsonDict]) -> BatchSubmitted:
        """Up to 1,000 tasks in one committed transaction, answered per item."""
        return self.call(calls.submit_batch(calls.requests_of(tasks)))

    def create_batch(self, jsonl: bytes, *, idempotency_key: str | None = None) -> Batch:
        """Upload a JSONL batch (`{"custom_id", "body": <task>}` per line)."""
        return self.call(calls.create_batch(jsonl, idempotency_key=idempotency_key))

    def get_batch(self, batch_id: str) -> Batch:
        return self.call(calls.get_batch(batch_id))

    def batch_results(self, batch_id: str) -> builtins.list[BatchResultLine]:
        return self.call(calls.batch_results(batch_id))

    # Project, platform ----------------------------------------------------------------------

    def webhook_secret(self) -> WebhookSecrets:
        return self.call(calls.webhook_secret())

    def rotate_webhook_secret(self, *, overlap_s: float | None = None) -> WebhookSecrets:
        """A new signing secret; the old one keeps signing for `overlap_s` (server default)."""
        return self.call(calls.rotate_webhook_secret(overlap_s))

    def workers(self) -> builtins.list[Worker]:
        return self.call(calls.workers())

    def queues(self) -> builtins.list[JsonDict]:
        return self.call(calls.queues())

    def models(self) -> builtins.list[JsonDict]:
        return self.call(calls.models())

    def upload_file(
        self, content: bytes, filename: str = "file", content_type: str = "application/octet-stream"
    ) -> FileObject:
        return self.call(calls.upload_file(content, filename, content_type))

    def get_file(self, file_id: str) -> FileObject:
        return self.call(calls.get_file(file_id))

    def delete_file(self, file_id: str) -> None:
        self.call(calls.delete_file(file_id))
