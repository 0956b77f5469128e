"""Batch submit (`POST /v1/tasks:batch`) against single submits, on the same API in the same run.

Both load the API in a closed loop for the same time; single submits with 64 connections (as the
pipeline suite), batches of 100 and 1,000 echo tasks with a few connections. Tasks/s counts the
tasks accepted (202) per second.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import orjson

from bench.loadgen import post_request, run_load
from bench.pipeline import BODY, CONCURRENCY, DURATION_S, _env, _free_port, _start, _stop

BATCH_SIZES = (100, 1000)
BATCH_CONCURRENCY = int(os.environ.get("BENCH_BATCH_CONCURRENCY", "4"))
WARM_UP_S = float(os.environ.get("BENCH_BATCH_WARM_UP_S", "10"))


def _accepted_tasks(bodies: list[bytes]) -> int:
    return sum(int(orjson.loads(b)["accepted"]) for b in bodies)


def _batch(port: int, size: int) -> dict[str, Any]:
    request = post_request("127.0.0.1", port, "/v1/tasks:batch", {"tasks": [BODY] * size})
    result = asyncio.run(
        run_load(
            "127.0.0.1", port, lambda _: request, BATCH_CONCURRENCY, DURATION_S, keep_bodies=True
        )
    )
    summary = result.summary()
    accepted = _accepted_tasks([b for b in result.bodies if b.startswith(b"{")])
    return {
        **summary,
        "batch_size": size,
        "concurrency": BATCH_CONCURRENCY,
        "tasks_per_s": round(accepted / result.seconds, 1),
        "accepted_tasks": accepted,
    }


def run(out: dict[str, Any]) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    env = _env(prefix, AUTOGLM_SERVER__RUN_PROJECTOR="false")
    proc = _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz")
    try:
        single_request = post_request("127.0.0.1", port, "/v1/tasks", BODY)
        asyncio.run(run_load("127.0.0.1", port, lambda _: single_request, CONCURRENCY, WARM_UP_S))
        single: dict[str, Any] = asyncio.run(
            run_load("127.0.0.1", port, lambda _: single_request, CONCURRENCY, DURATION_S)
        ).summary()
        single["tasks_per_s"] = single["throughput_rps"]
        print(f"single submits: {single['tasks_per_s']} tasks/s p50 {single['p50_ms']} ms")
        batches: dict[str, dict[str, Any]] = {}
        for size in BATCH_SIZES:
            batches[str(size)] = result = _batch(port, size)
            print(
                f"batches of {size}: {result['tasks_per_s']} tasks/s,"
                f" p50 {result['p50_ms']} ms per batch"
            )
    finally:
        _stop(proc)
    best = max(b["tasks_per_s"] for b in batches.values())
    out["batch_submit"] = {
        "duration_s": DURATION_S,
        "single": single,
        "batches": batches,
        "speedup_vs_single": round(best / max(single["tasks_per_s"], 1e-9), 1),
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["batch"]))
