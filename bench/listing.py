"""What the task indexes cost and buy, against baselines measured in the same run.

- list: `GET /v1/tasks` latency (one client, no queueing) with 100k tasks stored, for the
  filter shapes the dashboard uses, first pages and a deep page;
- submit: submit throughput with the indexes kept vs not kept (`redis.task_indexes=false`),
  alternated A/B/A/B so that drift on the machine hits both alike.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import orjson

from bench.loadgen import run_load
from bench.pipeline import REDIS, _closed_loop, _env, _free_port, _start, _stop
from mcp.settings import Settings
from mcp.store import SyncTaskStore
from schemas import AsyncTask, TaskEvent, TaskStatus, utcnow

TASKS = int(os.environ.get("BENCH_LIST_TASKS", "100000"))
LIST_REQUESTS = int(os.environ.get("BENCH_LIST_REQUESTS", "400"))
ROUNDS = int(os.environ.get("BENCH_INDEX_ROUNDS", "5"))
MODELS = ("echo", "glm-tiny")
ACTIONS = ("generate", "embed")


def get_request(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def seed(prefix: str, count: int) -> float:
    """`count` tasks of project `default` in Redis, through the same scripts the platform uses:
    mixed models, actions, statuses and metadata. Returns the seconds it took."""
    settings = Settings(redis={"url": REDIS, "key_prefix": prefix})
    store = SyncTaskStore(settings)
    started = time.perf_counter()
    now = utcnow()
    batch: list[TaskEvent] = []
    for n in range(count):
        task = AsyncTask(
            model=MODELS[n % 2],
            action=ACTIONS[(n // 2) % 2],
            payload={"prompt": f"task {n}"},
            created_at=now - timedelta(milliseconds=(count - n) * 5),
            metadata={"customer": f"c{n % 100}", "n": n},
        )
        batch.append(TaskEvent.of(task, TaskStatus.QUEUED, at=task.created_at, task=task))
        if n % 10 < 8:  # 80 % finished: 3 in 4 succeeded, 1 in 4 failed
            final = TaskStatus.FAILED if n % 40 < 8 else TaskStatus.SUCCEEDED
            batch.append(TaskEvent.of(task, final, attempt=1, result={"ok": True}))
        if len(batch) >= 1000:
            store.apply_events(batch)
            batch = []
    store.apply_events(batch)
    store.close()
    return time.perf_counter() - started


def list_latency(port: int, path: str) -> dict[str, Any]:
    request = get_request(port, path)
    result = asyncio.run(run_load("127.0.0.1", port, lambda _: request, 1, 1.0))
    result = asyncio.run(
        run_load("127.0.0.1", port, lambda _: request, 1, LIST_REQUESTS / 200, keep_bodies=True)
    )
    summary = result.summary()
    body = orjson.loads(result.bodies[-1]) if result.bodies else {}
    summary["tasks_per_page"] = len(body.get("tasks", []))
    return summary


def bench_list() -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    seconds = seed(prefix, TASKS)
    print(f"seeded {TASKS} tasks in {seconds:.1f} s")
    port = _free_port()
    env = _env(prefix, AUTOGLM_SERVER__RUN_PROJECTOR="false")
    proc = _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/healthz")
    shapes = {
        "newest_50": "/v1/tasks?limit=50",
        "status_failed": "/v1/tasks?status=failed&limit=50",
        "status_model": "/v1/tasks?status=succeeded&model=glm-tiny&limit=50",
        "model_action_metadata": "/v1/tasks?model=echo&action=embed&metadata=customer%3Dc42",
        "status_queued_200": "/v1/tasks?status=queued&limit=200",
    }
    try:
        out: dict[str, Any] = {}
        for name, path in shapes.items():
            out[name] = list_latency(port, path)
            print(f"  {name}: p50 {out[name]['p50_ms']} ms p99 {out[name]['p99_ms']} ms")
        # A deep page: follow cursors 100 pages down, then measure that page.
        path = shapes["newest_50"]
        for _ in range(100):
            page = httpx.get(f"http://127.0.0.1:{port}{path}").json()
            path = f"/v1/tasks?limit=50&cursor={page['next_cursor']}"
        out["page_100"] = list_latency(port, path)
        print(f"  page_100: p99 {out['page_100']['p99_ms']} ms")
    finally:
        _stop(proc)
    return {"tasks_stored": TASKS, "seed_seconds": round(seconds, 1), "shapes": out}


def bench_submit() -> dict[str, Any]:
    def api(indexes: bool) -> dict[str, Any]:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        port = _free_port()
        extra = {
            "AUTOGLM_SERVER__RUN_PROJECTOR": "false",
            "AUTOGLM_REDIS__TASK_INDEXES": "true" if indexes else "false",
        }
        proc = _start(
            ["-m", "autoglm", "api", "--port", str(port)], _env(prefix, **extra), port, "/readyz"
        )
        try:
            return _closed_loop(port)
        finally:
            _stop(proc)

    runs: dict[str, list[dict[str, Any]]] = {"with_indexes": [], "without_indexes": []}
    # Interleaved, and the order flips every round, so drift on a shared machine hits both; the
    # median of each side keeps one disturbed round from deciding the figure.
    for round_ in range(ROUNDS):
        for indexes in (False, True) if round_ % 2 == 0 else (True, False):
            key = "with_indexes" if indexes else "without_indexes"
            runs[key].append(api(indexes=indexes))
    median = {k: statistics.median(r["throughput_rps"] for r in v) for k, v in runs.items()}
    cost = 1 - median["with_indexes"] / median["without_indexes"]
    print(
        f"submit with indexes {median['with_indexes']:.0f} req/s, without "
        f"{median['without_indexes']:.0f} req/s (medians of {ROUNDS}): cost {cost:.1%}"
    )
    return {
        "runs": runs,
        "median_rps": {k: round(v, 1) for k, v in median.items()},
        "index_cost": round(cost, 3),
        "target_index_cost": 0.05,
    }


def run(out: dict[str, Any]) -> None:
    from bench.pipeline import KAFKA_WARM_UP_S, bench_api

    warm = bench_api(group_commit=True, warm_up_s=KAFKA_WARM_UP_S)
    print(f"broker warmed up for {KAFKA_WARM_UP_S:g} s (then {warm['throughput_rps']} req/s)")
    out["list"] = {**bench_list(), "target_p99_ms": 20}
    out["submit_index_cost"] = bench_submit()


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["listing"]))
