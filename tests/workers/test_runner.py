"""The runner: batch members are reported as each is done, and one past its timeout fails
alone while its batch-mates go on."""

from __future__ import annotations

import threading
import time
from typing import Any

from mcp.settings import ModelSpec, WorkerSettings
from schemas import AsyncTask, TaskStatus
from workers.backends.base import TaskContext
from workers.backends.echo import EchoBackend
from workers.outcome import Outcome
from workers.runner import Runner


def context(payload: dict[str, Any], timeout_s: float = 30.0) -> TaskContext:
    task = AsyncTask(model="echo", action="generate", payload=payload, timeout_s=timeout_s)
    return TaskContext(task=task)


def run(batch: list[TaskContext]) -> list[tuple[float, Outcome]]:
    runner = Runner(
        EchoBackend(ModelSpec(name="echo")),
        ModelSpec(name="echo"),
        WorkerSettings(),
        cancelled=lambda _ids: set(),
        reclaim=lambda ctx: ctx.attempt + 1,
        slots=2,
    )
    start = time.monotonic()
    seen: list[tuple[float, Outcome]] = []
    lock = threading.Lock()

    def report(_ctx: TaskContext, outcome: Outcome) -> None:
        with lock:
            seen.append((time.monotonic() - start, outcome))

    try:
        runner.start(batch, report).result(timeout=30)
    finally:
        runner.close()
    return seen


def test_quick_members_are_reported_before_a_slow_batch_mate_finishes() -> None:
    slow = context({"n": 0, "sleep_ms": 1500})
    quick = [context({"n": i}) for i in range(1, 4)]
    seen = run([slow, *quick])
    assert [o.task.payload["n"] for _, o in seen] == [1, 2, 3, 0]
    assert all(at < 1.0 for at, _ in seen[:3]), seen
    assert {o.status for _, o in seen} == {TaskStatus.SUCCEEDED}


def test_a_member_past_its_timeout_fails_alone_and_at_once() -> None:
    stuck = context({"n": 0, "sleep_ms": 20_000}, timeout_s=0.4)
    slower = context({"n": 1, "sleep_ms": 1500})
    seen = run([stuck, slower])
    by_n = {o.task.payload["n"]: (at, o) for at, o in seen}
    at, failed = by_n[0]
    assert failed.status is TaskStatus.FAILED and failed.error is not None
    assert failed.error.code == "timeout" and at < 1.2, at
    at, done = by_n[1]
    assert done.status is TaskStatus.SUCCEEDED and done.result == {
        "echo": {"n": 1, "sleep_ms": 1500}
    }
