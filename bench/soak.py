"""Memory and soak: the platform under a steady 500 tasks/s for ten minutes.

One API process (with its projector), an echo worker, a glm-tiny worker (a few tasks a second)
and a dispatcher (every fifth echo task asks for a webhook, to a local receiver). Reported per
minute: end-to-end latency (submit sent -> terminal event readable in Kafka, echo tasks) and
each process's resident memory; then the RSS slope (MB/min, least squares over the minutes)
and the latency drift (p99 of the first minute vs the last).

    BENCH_SOAK_S=600 BENCH_SOAK_RATE=500 python -m bench.soak    # writes bench/results/soak.json
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from typing import Any

import orjson

from bench.cpu import rss_mb
from bench.events import TerminalEvents
from bench.loadgen import post_request, run_rate
from bench.pipeline import KAFKA, _env, _free_port, _start, _stop
from bench.webhooks import Receiver
from mcp.settings import Settings

DURATION_S = float(os.environ.get("BENCH_SOAK_S", "600"))
RATE = float(os.environ.get("BENCH_SOAK_RATE", "500"))
WINDOW_S = float(os.environ.get("BENCH_SOAK_WINDOW_S", "60"))
WARM_UP_S = 20.0
WEBHOOK_EVERY = 5
GLM_EVERY = 250  # at 500/s: two glm-tiny tasks a second


def _body(model: str, callback: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "action": "generate",
        "payload": {"prompt": "Summarise the following in one sentence: the quick brown fox."},
    }
    if model == "glm-tiny":
        body["payload"]["max_tokens"] = 8
    if callback is not None:
        body["callback_url"] = callback
    return body


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minute, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / var, 3) if var else 0.0


ARENA_SPAN = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: a thread arena's heap is aligned to it


def smaps_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process by kind of mapping, in MB, from /proc/<pid>/smaps.

    heap: the main arena ([heap], brk); malloc_arenas: glibc's thread arenas (anonymous mappings
    starting on a 64 MiB boundary); stacks: thread stacks (anonymous mappings right after a guard
    page); anon_other: the other anonymous mappings (CPython's 1 MiB object arenas, allocations
    above malloc's mmap threshold, librdkafka's buffers); files: mapped files (code, libraries).
    """
    kb = {"heap": 0, "malloc_arenas": 0, "stacks": 0, "anon_other": 0, "files": 0}
    previous: tuple[int, str] = (-1, "")
    kind = "files"
    with open(f"/proc/{pid}/smaps", encoding="ascii", errors="replace") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and fields[0][0] in "0123456789abcdef":
                start, end = (int(x, 16) for x in fields[0].split("-"))
                path = fields[5] if len(fields) > 5 else ""
                if path == "[heap]":
                    kind = "heap"
                elif path and not path.startswith("[anon"):
                    kind = "files" if path.startswith("/") else "anon_other"
                elif start % ARENA_SPAN == 0:
                    kind = "malloc_arenas"
                elif previous == (start, "---p"):
                    kind = "stacks"
                else:
                    kind = "anon_other"
                previous = (end, fields[1])
            elif fields[0] == "Rss:":
                kb[kind] += int(fields[1])
    return {name: round(value / 1024, 1) for name, value in kb.items()}


def run(out: dict[str, Any]) -> None:
    prefix = f"soak{uuid.uuid4().hex[:6]}."
    port = _free_port()
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="autoglm-soak-") as cache_dir:
        env = _env(prefix, AUTOGLM_CACHE_DIR=cache_dir)
        procs = {
            "api": _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz"),
            "echo_worker": _start(["-m", "autoglm", "worker", "--model", "echo"], env, None, ""),
            "glm_tiny_worker": _start(
                ["-m", "autoglm", "worker", "--model", "glm-tiny"], env, None, ""
            ),
            "dispatcher": _start(["-m", "autoglm", "dispatcher", "--slot", "soak"], env, None, ""),
        }
        settings = Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})
        events = TerminalEvents(settings, f"{prefix}watch", time.perf_counter)
        plain = post_request("127.0.0.1", port, "/v1/tasks", _body("echo", None))
        hooked = post_request("127.0.0.1", port, "/v1/tasks", _body("echo", receiver.url()))
        glm = post_request("127.0.0.1", port, "/v1/tasks", _body("glm-tiny", None))

        def request(i: int) -> bytes:
            if i % GLM_EVERY == 0:
                return glm
            return hooked if i % WEBHOOK_EVERY == 0 else plain

        sent: list[dict[str, float]] = []
        loads: list[Any] = []
        rss: dict[str, list[tuple[float, float]]] = {name: [] for name in procs}
        smaps: dict[str, list[dict[str, float]]] = {name: [] for name in procs}
        try:
            time.sleep(5)  # workers join their groups; the watcher gets its partitions
            idle = {name: round(rss_mb(p.pid), 1) for name, p in procs.items()}
            asyncio.run(run_rate("127.0.0.1", port, request, RATE, WARM_UP_S, lambda *a: None))
            started = time.perf_counter()
            for minute in range(max(1, round(DURATION_S / WINDOW_S))):
                window: dict[str, float] = {}
                sent.append(window)

                def on_answer(i: int, status: int, body: bytes, t0: float) -> None:
                    if status == 202 and i % GLM_EVERY:
                        window[orjson.loads(body)["task_id"]] = t0  # noqa: B023

                load = asyncio.run(
                    run_rate("127.0.0.1", port, request, RATE, WINDOW_S, on_answer, 32)
                )
                loads.append(load)
                at = (time.perf_counter() - started) / 60
                for name, proc in procs.items():
                    rss[name].append((at, rss_mb(proc.pid)))
                    smaps[name].append(smaps_mb(proc.pid))
                print(
                    f"soak minute {minute + 1}: {load.sent / load.seconds:.0f} submits/s, "
                    f"RSS { ({n: round(p[-1][1], 1) for n, p in rss.items()}) }, "
                    f"API by mapping {smaps['api'][-1]}",
                    flush=True,
                )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(not set(w) <= set(events.at) for w in sent):
                time.sleep(0.2)
        finally:
            events.stop()
            for proc in procs.values():
                _stop(proc)
            receiver.close()
    windows: list[dict[str, Any]] = []
    for minute, (window, load) in enumerate(zip(sent, loads, strict=True)):
        latency = [(events.at[t] - t0) * 1000 for t, t0 in window.items() if t in events.at]
        windows.append(
            {
                "minute": minute + 1,
                "submitted_per_s": round(load.sent / load.seconds, 1),
                "statuses": {str(code): n for code, n in load.statuses.items()},
                "submit_p99_ms": load.summary()["p99_ms"],
                "completed": len(latency),
                "not_completed": len(window) - len(latency),
                "p50_ms": _pct(latency, 0.5),
                "p99_ms": _pct(latency, 0.99),
                "rss_mb": {name: round(points[minute][1], 1) for name, points in rss.items()},
                "rss_mb_by_mapping": {name: kinds[minute] for name, kinds in smaps.items()},
            }
        )
    first, last = windows[0], windows[-1]
    out["soak"] = {
        "rate_per_s": RATE,
        "minutes": len(windows),
        "webhooks": f"one echo task in {WEBHOOK_EVERY} asks for a completion webhook",
        "glm_tiny_per_s": round(RATE / GLM_EVERY, 1),
        "idle_rss_mb": idle,
        "rss_slope_mb_per_min": {name: _slope(points) for name, points in rss.items()},
        "rss_slope_mb_per_min_by_mapping": {
            name: {
                kind: _slope([(at, k[kind]) for (at, _), k in zip(rss[name], kinds, strict=True)])
                for kind in kinds[0]
            }
            for name, kinds in smaps.items()
        },
        "rss_mb_first_last": {
            name: [round(points[0][1], 1), round(points[-1][1], 1)] for name, points in rss.items()
        },
        "p99_ms_first_last_minute": [first["p99_ms"], last["p99_ms"]],
        "p50_ms_first_last_minute": [first["p50_ms"], last["p50_ms"]],
        "received_webhooks": len(receiver.arrivals),
        "windows": windows,
        "targets": {"api_rss_mb": 150, "api_rss_slope_mb_per_min": "flat"},
        "note": "latency: submit sent -> terminal event readable (read_committed) in task-events; "
        "RSS from /proc at the end of each minute; rss_mb_by_mapping from "
        "/proc/<pid>/smaps (see smaps_mb)",
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["soak"]))
