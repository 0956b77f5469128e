"""Submit throughput with the API's metrics off, on (the default), and with tracing on too.

One API process per variant, all three started and warmed up before any measurement and kept
for the whole run, on the same broker. Measurement windows then alternate between them in
rounds; every round visits the variants in another order (the six orders of three, in turn), so
drift on a shared machine and a position's advantage hit each variant alike. Each round gives
paired ratios (metrics / off, tracing / metrics) from windows seconds apart; the headline is the
median of those ratios, beside each variant's own spread. Tracing exports over OTLP/HTTP to a
sink in this process that answers 200 and keeps nothing, so its cost is the spans' making and
export.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.cpu import cpu_s
from bench.loadgen import post_request, run_load
from bench.pipeline import BODY, CONCURRENCY, _env, _free_port, _start, _stop

WARM_UP_S = float(os.environ.get("BENCH_TELEMETRY_WARM_UP_S", "8"))
WINDOW_S = float(os.environ.get("BENCH_TELEMETRY_WINDOW_S", "4"))
ROUNDS = int(os.environ.get("BENCH_TELEMETRY_ROUNDS", "12"))
KINDS = ("off", "metrics", "tracing")
ORDERS = list(itertools.permutations(KINDS))


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start_api(kind: str, sink: str) -> tuple[subprocess.Popen[bytes], int]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    extra = {"AUTOGLM_SERVER__RUN_PROJECTOR": "false"}
    if kind == "off":
        extra["AUTOGLM_TELEMETRY__METRICS"] = "false"
    if kind == "tracing":
        extra["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
    proc = _start(
        ["-m", "autoglm", "api", "--port", str(port)], _env(prefix, **extra), port, "/readyz"
    )
    return proc, port


def window(proc: subprocess.Popen[bytes], port: int, seconds: float) -> dict[str, Any]:
    """One measurement: throughput, latency and the API process's CPU time per request."""
    request = post_request("127.0.0.1", port, "/v1/tasks", BODY)
    cpu = cpu_s(proc.pid)
    result = asyncio.run(run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, seconds))
    summary = result.summary()
    used = cpu_s(proc.pid) - cpu
    summary["api_cpu_us_per_request"] = round(used / max(result.sent, 1) * 1e6, 1)
    return summary


def metrics_cost_us(n: int = 100_000) -> dict[str, float]:
    """In-process CPU cost of what metrics add to one submission: the request-latency
    middleware around an endpoint that does nothing, the submitted counter and the submit
    histogram; beside the same endpoint without them. Free of the machine's noise."""
    from api.metrics import SUBMIT_SECONDS, RequestMetrics, count_submitted

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def with_metrics(scope: Any, receive: Any, send: Any) -> None:
        await endpoint(scope, receive, send)
        count_submitted("echo", "generate")
        SUBMIT_SECONDS.observe(0.004)

    async def noop(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/v1/tasks", "endpoint": endpoint}
    apps = {"off": endpoint, "metrics": RequestMetrics(with_metrics)}

    async def loop(app: Any) -> float:
        began = time.process_time()
        for _ in range(n):
            await app(scope, noop, noop)
        return (time.process_time() - began) / n * 1e6

    costs = {kind: min(asyncio.run(loop(app)) for _ in range(3)) for kind, app in apps.items()}
    return {
        **{k: round(v, 2) for k, v in costs.items()},
        "added": round(costs["metrics"] - costs["off"], 2),
    }


def spread(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "median": round(statistics.median(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "min": round(min(values), 3),
        "q1": round(q[0], 3),
        "q3": round(q[2], 3),
        "max": round(max(values), 3),
        "cv": round(statistics.pstdev(values) / statistics.fmean(values), 3),
    }


def run(out: dict[str, Any]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{server.server_address[1]}"
    apis: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    try:
        for kind in KINDS:
            apis[kind] = start_api(kind, sink)
        # Warm-up: the broker's first transactions, each process's connections and code paths.
        for kind in KINDS:
            window(*apis[kind], WARM_UP_S)
        for round_ in range(ROUNDS):
            for kind in ORDERS[round_ % len(ORDERS)]:
                result = window(*apis[kind], WINDOW_S)
                runs[kind].append(result)
            line = ", ".join(f"{k} {runs[k][-1]['throughput_rps']}" for k in KINDS)
            print(f"round {round_ + 1}: req/s {line}", flush=True)
    finally:
        for proc, _ in apis.values():
            _stop(proc)
        server.shutdown()
    rps = {k: [float(r["throughput_rps"]) for r in v] for k, v in runs.items()}
    cpu = {k: [float(r["api_cpu_us_per_request"]) for r in v] for k, v in runs.items()}
    metrics_vs_off = [m / o for m, o in zip(rps["metrics"], rps["off"], strict=True)]
    tracing_vs_metrics = [t / m for t, m in zip(rps["tracing"], rps["metrics"], strict=True)]
    out["submit_telemetry"] = {
        "concurrency": CONCURRENCY,
        "window_s": WINDOW_S,
        "warm_up_s": WARM_UP_S,
        "rounds": ROUNDS,
        "orders": ["/".join(ORDERS[r % len(ORDERS)]) for r in range(ROUNDS)],
        "runs": runs,
        "rps": {k: spread(v) for k, v in rps.items()},
        "p50_ms": {k: statistics.median(float(r["p50_ms"]) for r in v) for k, v in runs.items()},
        "metrics_vs_off": spread(metrics_vs_off),
        "tracing_vs_metrics": spread(tracing_vs_metrics),
        "api_cpu_us_per_request": {k: spread(v) for k, v in cpu.items()},
        "metrics_cpu_vs_off": spread(
            [m / o for m, o in zip(cpu["metrics"], cpu["off"], strict=True)]
        ),
        "metrics_cost_in_process_us": metrics_cost_us(),
    }
    s = out["submit_telemetry"]
    print(f"req/s median: { {k: v['median'] for k, v in s['rps'].items()} }")
    print(
        f"metrics/off paired: median {s['metrics_vs_off']['median']}x "
        f"(IQR {s['metrics_vs_off']['q1']}-{s['metrics_vs_off']['q3']}); "
        f"tracing/metrics: median {s['tracing_vs_metrics']['median']}x"
    )
    cpu_median = {k: v["median"] for k, v in s["api_cpu_us_per_request"].items()}
    print(
        f"API CPU us/request median: {cpu_median}; metrics/off paired "
        f"{s['metrics_cpu_vs_off']['median']}x; in process: {s['metrics_cost_in_process_us']}"
    )


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["telemetry"]))
