"""Submit throughput with the API's metrics off, on (the default), and with tracing on too.

One API process per measurement, all on the same broker, in interleaved rounds of the same run
(drift on a shared machine hits all three alike). Tracing exports over OTLP/HTTP to a sink in
this process that answers 200 and keeps nothing, so its cost is the spans' making and export.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.loadgen import post_request, run_load
from bench.pipeline import BODY, CONCURRENCY, DURATION_S, _env, _free_port, _start, _stop

WARM_UP_S = float(os.environ.get("BENCH_TELEMETRY_WARM_UP_S", "15"))
ROUNDS = int(os.environ.get("BENCH_TELEMETRY_ROUNDS", "3"))
KINDS = ("off", "metrics", "tracing")


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def bench_submit(kind: str, sink: str, warm_up_s: float = 1.0) -> dict[str, Any]:
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
    try:
        request = post_request("127.0.0.1", port, "/v1/tasks", BODY)
        asyncio.run(run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, warm_up_s))
        result = asyncio.run(
            run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, DURATION_S)
        )
        return result.summary()
    finally:
        _stop(proc)


def run(out: dict[str, Any]) -> None:
    """`ROUNDS` rounds of off, metrics, tracing, interleaved. Off and metrics swap places every
    round: throughput drifts up while a fresh broker warms, and a fixed order would hand that
    drift to whichever runs second."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{server.server_address[1]}"
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    try:
        for round_ in range(ROUNDS):
            order = KINDS if round_ % 2 == 0 else (KINDS[1], KINDS[0], *KINDS[2:])
            for i, kind in enumerate(order):
                warm = WARM_UP_S if round_ == 0 and i == 0 else 1.0
                result = bench_submit(kind, sink, warm_up_s=warm)
                runs[kind].append(result)
                print(f"submit, {kind}: {result['throughput_rps']} req/s p50 {result['p50_ms']} ms")
    finally:
        server.shutdown()
    mean = {k: statistics.fmean(r["throughput_rps"] for r in v) for k, v in runs.items()}
    median = {k: statistics.median(r["throughput_rps"] for r in v) for k, v in runs.items()}
    out["submit_telemetry"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "rounds": ROUNDS,
        "runs": runs,
        "mean_rps": {k: round(v, 1) for k, v in mean.items()},
        "median_rps": {k: round(v, 1) for k, v in median.items()},
        "metrics_vs_off": round(mean["metrics"] / max(mean["off"], 1e-9), 3),
        "metrics_vs_off_median": round(median["metrics"] / max(median["off"], 1e-9), 3),
        "tracing_vs_metrics": round(mean["tracing"] / max(mean["metrics"], 1e-9), 3),
    }
    print(f"mean req/s: {out['submit_telemetry']['mean_rps']}")


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["telemetry"]))
