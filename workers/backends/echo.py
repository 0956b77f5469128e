"""The built-in `echo` model: returns its payload. Measures the platform itself.

Test hooks in the payload: `sleep_ms` makes a task slow (and honours cancellation),
`fail_times` makes its first N attempts raise.
"""

from __future__ import annotations

import time
from typing import Any

from mcp.errors import BackendError
from workers.backends.base import Backend, ResultOrError, TaskContext


class EchoFailure(BackendError):
    """Raised on purpose by an echo task asked to fail."""


class EchoBackend(Backend):
    def run_batch(self, action: str, batch: list[TaskContext]) -> list[ResultOrError]:
        return [self._one(ctx) for ctx in batch]

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
