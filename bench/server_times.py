"""Where a task's time goes inside our processes, from their `/metrics`: the mean of each
histogram below over a measured window (what its sum and count added), beside the bench's own
stages, which a client and a consumer of `task-events` see from outside."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# Per process: the histograms whose means tell the time spent in each step.
SERIES = {
    # The group commit's Kafka transaction, then the `queued` states written to Redis: both
    # before a submission's 202.
    "api": ("autoglm_group_commit_seconds", "autoglm_after_commit_seconds"),
    # The worker's transaction (results, events and offsets), then its own Redis write.
    "worker": ("autoglm_worker_transaction_commit_seconds", "autoglm_worker_result_write_seconds"),
}

Sums = dict[str, tuple[float, float]]


def sums(text: str, names: tuple[str, ...]) -> Sums:
    """(sum, count) of each histogram in `names` (summed over its labels), from a `/metrics`
    text (`bench.gc_pauses.scrape`); empty when the process did not answer."""
    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in names:
            continue
        totals = found.setdefault(family.name, [0.0, 0.0])
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                totals[0] += sample.value
            elif sample.name.endswith("_count"):
                totals[1] += sample.value
    return {name: (s, c) for name, (s, c) in found.items()}


def added(before: Sums, after: Sums) -> dict[str, Any]:
    """Per histogram: observations in the window and their mean in ms."""
    out: dict[str, Any] = {}
    for name, (total, count) in after.items():
        was_total, was_count = before.get(name, (0.0, 0.0))
        n = count - was_count
        out[name] = {
            "n": int(n),
            "mean_ms": round((total - was_total) / n * 1000, 3) if n else None,
        }
    return out
