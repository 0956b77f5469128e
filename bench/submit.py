"""Submit throughput with one and with several API processes, against a bare FastAPI endpoint
with the same number of processes (uvicorn workers sharing the port, as `autoglm api
--processes` does) and against one Kafka transaction per request, all in the same run.

    BENCH_API_PROCESSES=1,2 python -m bench.submit     # writes bench/results/submit.json
"""

from __future__ import annotations

import os
from typing import Any

from bench.pipeline import CONCURRENCY, DURATION_S, KAFKA_WARM_UP_S, bench_api, bench_bare

PROCESSES = [int(n) for n in os.environ.get("BENCH_API_PROCESSES", "1,2").split(",")]


def bench_processes(processes: int) -> dict[str, Any]:
    bare = bench_bare(processes)
    naive = bench_api(group_commit=False, processes=processes)
    grouped = bench_api(group_commit=True, processes=processes)
    ratio = round(grouped["throughput_rps"] / max(bare["throughput_rps"], 1e-9), 3)
    speedup = round(grouped["throughput_rps"] / max(naive["throughput_rps"], 1e-9), 1)
    print(
        f"[{processes} processes] bare {bare['throughput_rps']} req/s, one transaction per "
        f"request {naive['throughput_rps']}, autoglm {grouped['throughput_rps']} "
        f"({ratio}x bare, {speedup}x one transaction); CPU us per request: autoglm "
        f"{grouped.get('cpu_us_per_request')}, bare {bare.get('cpu_us_per_request')}",
        flush=True,
    )
    return {
        "bare_fastapi": bare,
        "one_txn_per_request": naive,
        "group_commit": grouped,
        "ratio_vs_bare": ratio,
        "speedup_vs_one_txn": speedup,
    }


def run(out: dict[str, Any]) -> None:
    # A freshly started broker runs interpreted until the JIT has compiled its hot paths.
    warm = bench_api(group_commit=True, warm_up_s=KAFKA_WARM_UP_S)
    print(f"broker warmed up for {KAFKA_WARM_UP_S:g} s (then {warm['throughput_rps']} req/s)")
    out["submit"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "by_processes": {str(n): bench_processes(n) for n in PROCESSES},
        "targets": {"ratio_vs_bare": 0.6, "speedup_vs_one_txn": 20},
        "note": "closed loop, 64 connections; each row: the bare endpoint, our API with one "
        "transaction per request and with group commit, each with that many processes "
        "sharing one port; Kafka, Redis, the API and the load generator share the machine; "
        "cpu_us_per_request: CPU time each process used during the window over the requests "
        "answered (server: the API or bare processes together)",
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["submit"]))
