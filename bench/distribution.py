"""Latency distributions as the end-to-end benchmarks report them (`celery_e2e` and Kafka's
floor beside it): the same percentiles, computed the same way, on both sides of a comparison."""

from __future__ import annotations


def percentile(values: list[float], p: float) -> float:
    """The value at rank `p` (0-1) of the sorted values, to 0.01; NaN when there are none."""
    ordered = sorted(values)
    return (
        round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else float("nan")
    )


def latency_ms(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and the maximum of latencies in milliseconds."""
    return {
        "p50_ms": percentile(values, 0.5),
        "p90_ms": percentile(values, 0.9),
        "p99_ms": percentile(values, 0.99),
        "p999_ms": percentile(values, 0.999),
        "max_ms": round(max(values), 2) if values else float("nan"),
    }
