"""How long a caller is willing to wait for a task."""

from __future__ import annotations

import time

import httpx

from autoglm_client.config import ClientConfig
from autoglm_client.errors import WaitTimeout

# The server sends a keep-alive comment every ~15 s on a quiet stream; silence far longer
# than that means a dead connection, which is then resumed.
STREAM_READ_TIMEOUT_S = 60.0


class Deadline:
    def __init__(self, task_id: str, timeout: float | None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def check(self) -> None:
        if self.at is not None and time.monotonic() >= self.at:
            raise WaitTimeout(self.task_id, self.timeout or 0.0)

    def clip(self, delay: float) -> float:
        remaining = self.remaining()
        return delay if remaining is None else min(delay, remaining)

    def stream_timeout(self, config: ClientConfig) -> httpx.Timeout:
        read = STREAM_READ_TIMEOUT_S
        remaining = self.remaining()
        if remaining is not None:
            read = min(read, remaining + 0.05)
        return httpx.Timeout(
            config.timeout.connect, read=read, write=config.timeout.write, pool=None
        )
