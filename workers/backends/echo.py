"""The built-in `echo` model: returns its payload. Measures the platform itself.

Test hooks in the payload: `sleep_ms` makes a task slow (and honours cancellation),
`fail_times` makes its first N attempts raise. A batch runs its members one after another,
shortest first, and reports each as it is done.
"""

from __future__ import annotations

import time
from typing import Any

from mcp.errors import BackendError
from workers.backends.base import Backend, Report, ResultOrError, TaskContext


class EchoFailure(BackendError):
    """Raised on purpose by an echo task asked to fail."""


class EchoBackend(Backend):
    concurrency = 8

    def run_batch(self, action: str, batch: list[TaskContext]) -> list[ResultOrError]:
        return [self._one(ctx) for ctx in batch]

    def run_streaming(self, action: str, batch: list[TaskContext], report: Report) -> None:
        order = sorted(range(len(batch)), key=lambda i: _sleep_s(batch[i].payload))
        for index in order:
            report(index, self._one(batch[index]))

    def _one(self, ctx: TaskContext) -> ResultOrError:
        payload: dict[str, Any] = ctx.payload
        fail_times = int(payload.get("fail_times", 0) or 0)
        if ctx.attempt <= fail_times:
            return EchoFailure(f"echo asked to fail {fail_times} time(s); attempt {ctx.attempt}")
        sleep_s = float(payload.get("sleep_ms", 0) or 0) / 1000
        end = time.monotonic() + sleep_s
        while time.monotonic() < end and not ctx.cancelled():
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
        if ctx.on_token is not None and isinstance(payload.get("prompt"), str):
            for word in payload["prompt"].split(" "):
                ctx.on_token(word + " ")
        return {"echo": payload}


def _sleep_s(payload: dict[str, Any]) -> float:
    """The member's cost, for ordering only (a bad value fails in `_one`)."""
    try:
        return max(0.0, float(payload.get("sleep_ms", 0) or 0) / 1000)
    except (TypeError, ValueError):
        return 0.0
