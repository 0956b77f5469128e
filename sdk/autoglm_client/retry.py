"""When to try a request again: 429 and 503 (honouring `Retry-After`) and lost connections.

Every retry of a submission carries the same Idempotency-Key, so a retry never makes a second
task. A request that may have reached the server is only retried when it is idempotent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from autoglm_client.errors import retry_after_of

RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with full jitter; `attempt` counts from 0."""
        ceiling: float = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)

    def after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying this answer, or None to give it to the caller."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        told = retry_after_of(response)
        if told is None:
            return self.backoff(attempt)
        if told > self.max_retry_after_s:
            return None
        # A little jitter above the server's hint spreads a crowd of refused clients.
        return told + random.uniform(0, min(1.0, self.backoff_s * 2**attempt))

    def after_error(
        self, attempt: int, exc: httpx.TransportError, idempotent: bool
    ) -> float | None:
        """Seconds to wait before retrying after a transport error, or None to raise."""
        if attempt >= self.max_retries:
            return None
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return self.backoff(attempt) if never_sent or idempotent else None


NO_RETRIES = RetryPolicy(max_retries=0)
