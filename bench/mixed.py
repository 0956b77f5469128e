"""Quick tasks among slow ones: does a slow task hold up the tasks behind it?

Two echo workers share a 4-partition topic. The same open-loop load runs against the same
processes with quick tasks only (the baseline) and with every tenth task slow, in alternating
rounds. Reported: quick-task latency, submit sent -> terminal event committed, on both sides.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer

from bench.loadgen import post_request, run_rate
from bench.pipeline import KAFKA, _env, _free_port, _start, _stop
from mcp.names import Topics
from mcp.settings import Settings
from schemas import TaskEvent, loads

RATE = float(os.environ.get("BENCH_MIXED_RATE", "50"))
DURATION_S = float(os.environ.get("BENCH_MIXED_DURATION_S", "8"))
SLOW_MS = int(os.environ.get("BENCH_MIXED_SLOW_MS", "1000"))
SLOW_EVERY = 10  # a 10 % mix
ROUNDS = int(os.environ.get("BENCH_MIXED_ROUNDS", "2"))


def _body(slow: bool, i: int) -> dict[str, Any]:
    payload: dict[str, Any] = {"prompt": f"task {i}"}
    if slow:
        payload["sleep_ms"] = SLOW_MS
    return {"model": "echo", "action": "generate", "payload": payload}


class _Finished:
    """Terminal events as they are committed: task_id -> perf_counter()."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.at: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": KAFKA,
                "group.id": group,
                "isolation.level": "read_committed",
                "auto.offset.reset": "latest",
                "fetch.wait.max.ms": 1,
            }
        )
        self._consumer.subscribe([Topics.of(settings).events])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            event = loads(TaskEvent, msg.value() or b"")
            if event.status.terminal:
                self.at[event.task_id] = time.perf_counter()
        self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else -1.0


def _one_run(port: int, finished: _Finished, with_slow: bool) -> tuple[list[float], list[float]]:
    """One open-loop run: latencies (ms) of its quick and of its slow tasks."""
    quick = post_request("127.0.0.1", port, "/v1/tasks", _body(False, 0))
    slow = post_request("127.0.0.1", port, "/v1/tasks", _body(True, 0))
    kinds: dict[str, bool] = {}
    sent: dict[str, float] = {}

    def request(i: int) -> bytes:
        return slow if with_slow and i % SLOW_EVERY == 0 else quick

    def on_answer(i: int, status: int, body: bytes, t0: float) -> None:
        if status == 202:
            task_id = orjson.loads(body)["task_id"]
            sent[task_id] = t0
            kinds[task_id] = with_slow and i % SLOW_EVERY == 0

    asyncio.run(run_rate("127.0.0.1", port, request, RATE, DURATION_S, on_answer))
    deadline = time.monotonic() + 30 + SLOW_MS / 1000
    while time.monotonic() < deadline and not set(sent) <= set(finished.at):
        time.sleep(0.1)
    done = [t for t in sent if t in finished.at]
    if len(done) < len(sent):
        print(f"   {len(sent) - len(done)} task(s) never finished")
    latency = {t: (finished.at[t] - sent[t]) * 1000 for t in done}
    return [v for t, v in latency.items() if not kinds[t]], [
        v for t, v in latency.items() if kinds[t]
    ]


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_ms": _pct(values, 0.5),
        "p90_ms": _pct(values, 0.9),
        "p99_ms": _pct(values, 0.99),
        "max_ms": round(max(values), 1) if values else -1.0,
        # Quick tasks that waited about as long as a slow task runs: held up behind one.
        "waited_like_a_slow_task": sum(1 for v in values if v >= 0.9 * SLOW_MS),
    }


def run(out: dict[str, Any]) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    env = _env(prefix, AUTOGLM_WORKER__HEARTBEAT_INTERVAL_S="0.5")
    api = _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz")
    workers = [
        _start(["-m", "autoglm", "worker", "--model", "echo", "--slot", str(slot)], env, None, "")
        for slot in (0, 1)
    ]
    settings = Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})
    finished = _Finished(settings, f"{prefix}watch")
    quick: dict[bool, list[float]] = {False: [], True: []}
    slow: list[float] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = httpx.get(f"http://127.0.0.1:{port}/v1/workers", timeout=5).json()
            if len(body["workers"]) == 2 and all(w["partitions"] for w in body["workers"]):
                break
            time.sleep(0.2)
        time.sleep(2)  # the watcher has its partitions
        _one_run(port, finished, with_slow=False)  # warm-up
        # Alternating rounds, so that a load spike on the machine hits both sides alike.
        for with_slow in (False, True) * ROUNDS:
            quick_ms, slow_ms = _one_run(port, finished, with_slow)
            quick[with_slow] += quick_ms
            slow += slow_ms
    finally:
        finished.stop()
        for proc in workers:
            _stop(proc)
        _stop(api)
    baseline, mixed = _summary(quick[False]), _summary(quick[True])
    ratio = mixed["p99_ms"] / max(baseline["p99_ms"], 1e-9)
    print(
        f"quick-task p99 at {RATE:g}/s: {baseline['p99_ms']} ms without slow tasks,"
        f" {mixed['p99_ms']} ms with 10 % of tasks taking {SLOW_MS} ms ({ratio:.2f}x);"
        f" quick tasks that waited >= {0.9 * SLOW_MS:g} ms: {mixed['waited_like_a_slow_task']}"
    )
    out["head_of_line"] = {
        "rate_per_s": RATE,
        "duration_s": DURATION_S,
        "rounds": ROUNDS,
        "workers": 2,
        "partitions": settings.kafka.partitions,
        "slow_ms": SLOW_MS,
        "slow_share": 1 / SLOW_EVERY,
        "quick_without_slow": baseline,
        "quick_with_slow": mixed,
        "slow": _summary(slow),
        "quick_p99_ratio": round(ratio, 2),
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["mixed"]))
