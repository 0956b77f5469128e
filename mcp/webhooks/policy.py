"""When the next attempt of a failed delivery is due."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 86_400.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait according to a `Retry-After` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)


class RetryPolicy:
    """`schedule[i]` is the wait before attempt i, after attempt i-1 failed; jitter spreads it."""

    def __init__(
        self,
        schedule: Sequence[float],
        jitter: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.schedule = list(schedule) or [0.0]
        self.jitter = jitter
        self.uniform = uniform

    @property
    def attempts(self) -> int:
        return len(self.schedule)

    def next_attempt_at(self, step: int, now: float, retry_after: float | None) -> float | None:
        """After attempt `step` failed at `now`: when to try again, or None to give up."""
        following = step + 1
        if following >= len(self.schedule):
            return None
        delay = self.schedule[following]
        delay *= 1 + self.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return now + max(0.0, delay)
