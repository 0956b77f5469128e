"""Following one task on a terminal: status changes and elapsed time on stderr, generated
tokens on stdout as they arrive, then the result."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from autoglm_client.client import Client
from autoglm_client.models import StreamEvent, Task, TaskStatus


class Progress:
    def __init__(
        self,
        client: Client,
        *,
        quiet: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.client = client
        self.quiet = quiet
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.started = time.monotonic()
        self.status: str | None = None
        self.streamed = False
        self.mid_line = False

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.2f}s"

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self.mid_line:
            self.out.write("\n")
            self.out.flush()
            self.mid_line = False
        self.err.write(f"[{self.elapsed()}] {text}\n")
        self.err.flush()

    def status_changed(self, status: str, extra: str = "") -> None:
        if status != self.status:
            self.status = status
            self.note(f"{status}{extra}")

    def on_event(self, event: StreamEvent) -> None:
        if event.event == "token":
            self.streamed = True
            if not self.quiet:
                self.out.write(event.delta)
                self.out.flush()
                self.mid_line = not event.delta.endswith("\n")
        elif event.event in ("status", "end"):
            status = str(event.data.get("status", ""))
            attempt = event.data.get("attempt")
            self.status_changed(status, f" (attempt {attempt})" if attempt else "")

    def follow(self, task_id: str, timeout: float | None = None) -> Task:
        first = self.client.get(task_id)
        if not self.quiet:
            self.err.write(f"task {task_id}  model {first.model}  action {first.action}\n")
        self.status_changed(first.status.value)
        task = self.client.wait(task_id, timeout=timeout, on_event=self.on_event)
        self.status_changed(task.status.value)
        self.finish(task)
        return task

    def finish(self, task: Task) -> None:
        if self.quiet:
            return
        if self.mid_line:
            self.out.write("\n")
            self.mid_line = False
        took = ""
        if task.started_at and task.finished_at:
            took = f", ran {(task.finished_at - task.started_at).total_seconds():.2f} s"
        self.err.write(f"[{self.elapsed()}] done: {task.status.value}{took}\n")
        if task.status is not TaskStatus.SUCCEEDED and task.error is not None:
            self.err.write(f"error: {task.error.code}: {task.error.message}\n")
        elif task.result is not None and not (self.streamed and task.text is not None):
            self.out.write(json.dumps(task.result, ensure_ascii=False) + "\n")
        self.out.flush()
        self.err.flush()
