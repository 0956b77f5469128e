"""Pauses of the Python collector in a process of ours, from its `/metrics`
(`autoglm_gc_pause_seconds`, see `mcp.heap`): what a measured window added."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Counts = dict[str, float]


def scrape(url: str) -> str:
    """A process's `/metrics` text; empty when it does not answer."""
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def counts(text: str) -> Counts:
    """Per generation, from a `/metrics` text: collections, seconds paused, collections longer
    than 2 and 5 ms. Empty when the process serves no such metric (then nothing is reported)."""
    found: Counts = {}
    for family in text_string_to_metric_families(text):
        if family.name != "autoglm_gc_pause_seconds":
            continue
        for sample in family.samples:
            gen = sample.labels.get("generation")
            if sample.name.endswith("_count"):
                found[f"{gen}.count"] = sample.value
            elif sample.name.endswith("_sum"):
                found[f"{gen}.sum"] = sample.value
            elif sample.name.endswith("_bucket") and sample.labels["le"] in ("0.002", "0.005"):
                found[f"{gen}.le{sample.labels['le']}"] = sample.value
    return found


def added(before: Counts, after: Counts) -> dict[str, Any]:
    """Per generation (`gen0`..`gen2`): collections, ms paused in all, collections > 2 / > 5 ms."""
    out: dict[str, Any] = {}
    for gen in ("0", "1", "2"):
        if f"{gen}.count" not in after:
            continue

        def delta(key: str, gen: str = gen) -> float:
            return after.get(f"{gen}.{key}", 0.0) - before.get(f"{gen}.{key}", 0.0)

        count = delta("count")
        out[f"gen{gen}"] = {
            "collections": int(count),
            "paused_ms": round(delta("sum") * 1000, 1),
            "over_2ms": int(count - delta("le0.002")),
            "over_5ms": int(count - delta("le0.005")),
        }
    return out
