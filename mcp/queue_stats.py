"""Per model: completions and queue waits of the last minute, in a few small Redis hashes.

Workers add each committed outcome to the hash of its 10 s bucket (`count` and one field per
queue-wait bucket, the same bounds as the worker's histogram); `GET /v1/queues` reads six
hashes per model and interpolates p50/p95 the way Prometheus's `histogram_quantile` does.
The cost is fixed whatever the backlog: no task is ever scanned.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp.names import Keys
from mcp.telemetry.metrics import LATENCY_BUCKETS

BUCKET_S = 10
WINDOW_BUCKETS = 6
TTL_S = BUCKET_S * (WINDOW_BUCKETS + 2)


@dataclass(frozen=True)
class QueueWindow:
    completed: int
    wait_p50_s: float | None
    wait_p95_s: float | None


def bucket_of(now: float) -> int:
    return int(now // BUCKET_S)


def wait_field(wait_s: float) -> str:
    """The histogram field a queue wait falls in: `w<i>`, bound i (or past the last)."""
    return f"w{bisect.bisect_left(LATENCY_BUCKETS, max(0.0, wait_s))}"


def record(pipe: Any, keys: Keys, model: str, waits: Iterable[float | None], now: float) -> None:
    """Queue HINCRBYs on `pipe` (sync or async) for outcomes committed now; a None wait is an
    outcome that never started (expired, cancelled while queued)."""
    fields: Counter[str] = Counter()
    for wait in waits:
        fields["count"] += 1
        if wait is not None:
            fields[wait_field(wait)] += 1
    if not fields:
        return
    key = keys.queue_stats(model, bucket_of(now))
    for name, n in fields.items():
        pipe.hincrby(key, name, n)
    pipe.expire(key, TTL_S)


def window_keys(keys: Keys, model: str, now: float) -> list[str]:
    last = bucket_of(now)
    return [keys.queue_stats(model, b) for b in range(last - WINDOW_BUCKETS + 1, last + 1)]


def summarize(hashes: Sequence[dict[Any, Any]]) -> QueueWindow:
    total: Counter[str] = Counter()
    for raw in hashes:
        for name, value in raw.items():
            total[name.decode() if isinstance(name, bytes) else str(name)] += int(value)
    counts = [total.get(f"w{i}", 0) for i in range(len(LATENCY_BUCKETS) + 1)]
    return QueueWindow(total.get("count", 0), quantile(0.5, counts), quantile(0.95, counts))


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """Linear interpolation inside the bucket that holds the q-th wait (histogram_quantile)."""
    n = sum(counts)
    if n == 0:
        return None
    rank = q * n
    seen = 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count:
            if i == len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            low = LATENCY_BUCKETS[i - 1] if i else 0.0
            high = LATENCY_BUCKETS[i]
            return round(low + (high - low) * (rank - seen) / count, 4)
        seen += count
    return LATENCY_BUCKETS[-1]


def now() -> float:
    return time.time()
