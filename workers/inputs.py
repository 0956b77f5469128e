"""The worker's side of the claim check: fetch what the task refers to, store large results.

A task from Kafka may carry `payload_file` (its whole payload as a JSON file) and image fields
as `{"file_id": …}`. The backend sees a plain payload, images as base64 as if they had been sent
inline. A result whose JSON is larger than `blobs.offload_bytes` is stored as a file of the
task's project under an id derived from the task id, so a retried or replayed publication
rewrites the same file, and the result becomes `{"file": {"id", "url", "size", ...}}`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Hashable
from typing import Any

import orjson

from mcp.blobs.files import FileStore
from mcp.errors import BackendError, FileNotFound
from mcp.settings import Settings
from schemas import AsyncTask
from schemas.files import content_url
from schemas.payloads import IMAGE_FIELDS
from workers.backends.base import Backend, Report, Result, ResultOrError, TaskContext


class InputMissing(BackendError):
    """A file the task refers to is gone (deleted or expired) before the task ran."""

    code = "input_missing"
    permanent = True


def result_file_id(task_id: str) -> str:
    return "file_" + hashlib.sha256(f"{task_id}:result".encode()).hexdigest()[:32]


class TaskFiles:
    def __init__(self, files: FileStore, settings: Settings) -> None:
        self.files = files
        self.settings = settings

    def payload(self, task: AsyncTask) -> dict[str, Any]:
        """The payload the backend should see; raises InputMissing when a file is gone."""
        payload = task.payload
        if task.payload_file is not None:
            loaded = orjson.loads(self._read(task, task.payload_file, "payload"))
            payload = loaded if isinstance(loaded, dict) else {}
        for name in IMAGE_FIELDS.get(task.action, ()):
            value = payload.get(name)
            if isinstance(value, dict) and "file_id" in value:
                data = self._read(task, str(value["file_id"]), name)
                payload = {**payload, name: base64.b64encode(data).decode()}
        return payload

    def result(self, task: AsyncTask, result: dict[str, Any] | None) -> dict[str, Any] | None:
        """The result as Kafka should carry it: itself, or a link to the file holding it."""
        if result is None:
            return None
        encoded = orjson.dumps(result)
        if len(encoded) <= self.settings.blobs.offload_bytes:
            return result
        file_id = result_file_id(task.task_id)
        info = self.files.create_sync(
            task.project,
            encoded,
            retention_s=self.settings.redis.task_retention_s,
            file_id=file_id,
            content_type="application/json",
            purpose="task_result",
            task_id=task.task_id,
            filename="result.json",
        )
        link = {
            "id": info.id,
            "url": content_url(info.id),
            "size": info.size,
            "sha256": info.sha256,
            "content_type": info.content_type,
        }
        return {"file": link}

    def _read(self, task: AsyncTask, file_id: str, field: str) -> bytes:
        try:
            return self.files.read_sync(task.project, file_id)
        except FileNotFound as exc:
            raise InputMissing(
                f"{field!r} refers to file {file_id!r}, which is gone (deleted or expired)",
                {"field": field, "file_id": file_id},
            ) from exc


class ClaimCheckBackend(Backend):
    """Wraps a backend: resolves each task's files before it runs, stores large results after.

    It keeps the inner backend's concurrency and streaming, so a slow member still holds up
    no other. A failure to read or write the blob store fails that task's attempt alone (and
    is retried like any backend error); a file that is gone fails the task for good.
    """

    def __init__(self, inner: Backend, files: TaskFiles) -> None:
        super().__init__(inner.spec)
        self.inner = inner
        self.files = files
        self.concurrency = inner.concurrency

    def load(self) -> None:
        self.inner.load()

    def batch_key(self, action: str, payload: dict[str, Any]) -> Hashable:
        return self.inner.batch_key(action, payload)

    def run_batch(self, action: str, batch: list[TaskContext]) -> list[ResultOrError]:
        results: list[ResultOrError] = [RuntimeError("no result")] * len(batch)

        def keep(index: int, result: ResultOrError) -> None:
            results[index] = result

        self.run_streaming(action, batch, keep)
        return results

    def run_streaming(self, action: str, batch: list[TaskContext], report: Report) -> None:
        ready: list[int] = []
        for i, ctx in enumerate(batch):
            try:
                ctx.resolved = self.files.payload(ctx.task)
                if ctx.task.payload_file is not None and not ctx.payload.get("stream", True):
                    ctx.on_token = None  # the worker saw no `stream: false` in the bare task
                ready.append(i)
            except Exception as exc:
                report(i, exc)
        if not ready:
            return

        def stored(j: int, result: ResultOrError) -> None:
            i = ready[j]
            report(
                i, result if isinstance(result, BaseException) else self._stored(i, batch, result)
            )

        self.inner.run_streaming(action, [batch[i] for i in ready], stored)

    def _stored(self, i: int, batch: list[TaskContext], result: Result) -> ResultOrError:
        try:
            return self.files.result(batch[i].task, result) or {}
        except Exception as exc:
            return exc
