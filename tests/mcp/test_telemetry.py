"""Telemetry pieces without a broker: queue-wait windows, GPU gauges from an NVML double, JSON
log lines, bounded labels."""

from __future__ import annotations

import logging
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from mcp import queue_stats
from mcp.names import Keys
from mcp.telemetry.gpu import GpuCollector
from mcp.telemetry.logs import JsonFormatter, task_fields
from mcp.telemetry.metrics import status_class
from mcp.webhooks.metrics import TOP_HOSTS, bounded
from schemas import AsyncTask, TraceContext


class HashPipe:
    """Redis's HINCRBY/EXPIRE as the worker queues them, kept in dicts."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, int]] = defaultdict(dict)
        self.expiring: set[str] = set()

    def hincrby(self, key: str, field: str, n: int) -> None:
        self.hashes[key][field] = self.hashes[key].get(field, 0) + n

    def expire(self, key: str, ttl: int) -> None:
        self.expiring.add(key)


def test_queue_window_counts_completions_and_interpolates_waits() -> None:
    keys, pipe, now = Keys("t:"), HashPipe(), 1_000_000.0
    queue_stats.record(pipe, keys, "echo", [0.02] * 50 + [0.2] * 45 + [3.0] * 5, now - 30)
    queue_stats.record(pipe, keys, "echo", [None, None], now)
    queue_stats.record(pipe, keys, "echo", [9.0] * 10, now - 120)  # out of the window
    assert pipe.expiring == set(pipe.hashes)
    window = [pipe.hashes.get(k, {}) for k in queue_stats.window_keys(keys, "echo", now)]
    summary = queue_stats.summarize(window)
    assert summary.completed == 102
    assert summary.wait_p50_s is not None and 0.01 < summary.wait_p50_s <= 0.025
    assert summary.wait_p95_s is not None and 0.1 < summary.wait_p95_s <= 0.25
    empty = queue_stats.summarize([{}])
    assert (empty.completed, empty.wait_p50_s, empty.wait_p95_s) == (0, None, None)


class FakeNvml:
    """An in-memory NVML with two devices."""

    class NVMLError(Exception):
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=[80, 40][handle])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=2**30 * (handle + 1), total=2**34)


def test_gpu_gauges_per_device() -> None:
    families = {f.name: f for f in GpuCollector(FakeNvml(), "glm").collect()}
    util = {s.labels["gpu"]: s.value for s in families["autoglm_gpu_utilization_ratio"].samples}
    assert util == {"0": 0.8, "1": 0.4}
    used = families["autoglm_gpu_memory_used_bytes"].samples
    assert [s.value for s in used] == [2**30, 2**31]
    assert {s.labels["model"] for s in used} == {"glm"}


def test_json_log_lines_carry_the_task_and_its_trace(caplog: pytest.LogCaptureFixture) -> None:
    task = AsyncTask(
        model="echo",
        action="generate",
        trace=TraceContext(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    )
    formatter = JsonFormatter({"service": "worker", "model": "echo", "worker_id": "echo.0"})
    record = logging.LogRecord("w", logging.INFO, __file__, 1, "task %s", (task.task_id,), None)
    for name, value in task_fields(task).items():
        setattr(record, name, value)
    line = orjson.loads(formatter.format(record))
    assert line["message"] == f"task {task.task_id}"
    assert line["task_id"] == task.task_id
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (line["service"], line["model"], line["worker_id"]) == ("worker", "echo", "echo.0")


def test_labels_stay_bounded() -> None:
    assert [status_class(c) for c in (200, 302, 410, 503, None)] == [
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "none",
    ]
    load = {f"host-{i}:443": i + 1 for i in range(TOP_HOSTS + 30)}
    shown = bounded(load)
    assert len(shown) == TOP_HOSTS + 1
    assert sum(shown.values()) == sum(load.values())


def test_a_taken_metrics_port_is_logged_not_fatal() -> None:
    import socket

    from mcp.telemetry.metrics import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert serve(taken.getsockname()[1], "127.0.0.1") is None
    assert serve(None) is None
