"""Submit throughput and end-to-end latency of the pipeline, against same-run baselines.

- bare: a FastAPI endpoint taking the same body (the ceiling);
- naive: our API with one Kafka transaction per request;
- autoglm: our API with group commit;
- e2e: echo tasks at a fixed rate, submit -> terminal event committed in Kafka.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer

from bench.cpu import CpuMeter, family, server_pid
from bench.loadgen import post_request, run_load, run_rate
from mcp.names import Topics
from mcp.records import decode_value
from mcp.settings import Settings
from schemas import TaskEvent

ROOT = Path(__file__).resolve().parents[1]
KAFKA = os.environ.get("AUTOGLM_TEST_KAFKA", "127.0.0.1:19092")
REDIS = os.environ.get("AUTOGLM_TEST_REDIS", "redis://127.0.0.1:16379/0")
BODY = {
    "model": "echo",
    "action": "generate",
    "payload": {"prompt": "Summarise the following in one sentence: the quick brown fox."},
    "metadata": {"bench": True},
}
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "8"))
E2E_RATE = float(os.environ.get("BENCH_E2E_RATE", "100"))
KAFKA_WARM_UP_S = float(os.environ.get("BENCH_KAFKA_WARM_UP_S", "40"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(prefix: str, **extra: str) -> dict[str, str]:
    settings = Settings(
        dev_mode=True,
        instance_id=prefix.rstrip("."),
        log_level="WARNING",
        kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix},
        redis={"url": REDIS, "key_prefix": prefix},
    )
    return {**os.environ, **settings.to_env(), **extra}


def _start(
    args: list[str], env: dict[str, str], port: int | None, probe: str
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if port is not None:
        deadline = time.monotonic() + 180  # a loaded machine starts slowly
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            proc.kill()
            raise RuntimeError(f"{args} did not come up")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _closed_loop(
    port: int, warm_up_s: float = 1.0, server: int | None = None, request: bytes | None = None
) -> dict[str, Any]:
    """Throughput and latency of `request` (a submission unless given); with the server's pid,
    also the CPU each side used per request: the server (with its child processes), the Kafka
    broker, Redis and the load generator."""
    request = request or post_request("127.0.0.1", port, "/v1/tasks", BODY)
    asyncio.run(run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, warm_up_s))
    groups = {"server": family(server) if server is not None else []}
    for name, kind, address in (("broker", "kafka", KAFKA), ("redis", "redis", REDIS)):
        pid = server_pid(kind, address)
        groups[name] = [pid] if pid is not None else []
    groups["load_generator"] = [os.getpid()]
    meter = CpuMeter(groups)
    meter.start()
    result = asyncio.run(run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, DURATION_S))
    used = meter.stop()
    summary: dict[str, Any] = result.summary()
    if server is not None:
        per_request = 1e6 / max(result.sent, 1)
        summary["cpu_us_per_request"] = {
            name: round(seconds * per_request, 1) for name, seconds in used.items() if groups[name]
        }
        summary["cpu_cores"] = {
            name: round(seconds / result.seconds, 2)
            for name, seconds in used.items()
            if groups[name]
        }
    return summary


def bench_bare(processes: int = 1) -> dict[str, Any]:
    port = _free_port()
    args = ["-m", "bench.bare", str(port), str(processes)]
    proc = _start(args, dict(os.environ), port, "/docs")
    try:
        return _closed_loop(port, server=proc.pid)
    finally:
        _stop(proc)


def bench_api(group_commit: bool, warm_up_s: float = 1.0, processes: int = 1) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    extra = {"AUTOGLM_SERVER__RUN_PROJECTOR": "false"}
    if not group_commit:
        extra["AUTOGLM_KAFKA__GROUP_COMMIT_MAX_MESSAGES"] = "1"
        extra["AUTOGLM_KAFKA__GROUP_COMMIT_LANES"] = "1"
    args = ["-m", "autoglm", "api", "--port", str(port), "--processes", str(processes)]
    proc = _start(args, _env(prefix, **extra), port, "/readyz")
    try:
        return _closed_loop(port, warm_up_s, proc.pid)
    finally:
        _stop(proc)


def bench_e2e() -> dict[str, Any]:
    """Echo at a fixed rate: submit sent -> terminal event committed and readable."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    env = _env(prefix)
    api = _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz")
    worker = _start(["-m", "autoglm", "worker", "--model", "echo"], env, None, "")
    settings = Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})
    sent: dict[str, float] = {}
    finished: dict[str, float] = {}
    server_ms: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": KAFKA,
                "group.id": f"{prefix}watch",
                "isolation.level": "read_committed",
                "auto.offset.reset": "latest",
                "fetch.wait.max.ms": 1,
            }
        )
        consumer.subscribe([Topics.of(settings).events])
        while not stop.is_set():
            msg = consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            event = decode_value(TaskEvent, msg.value(), msg.headers())
            if event.status.terminal:
                finished[event.task_id] = time.perf_counter()
        consumer.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(3)  # worker joins its group; watcher gets its partitions
    request = post_request("127.0.0.1", port, "/v1/tasks", BODY)

    def on_answer(_i: int, status: int, body: bytes, t0: float) -> None:
        if status == 202:
            sent[orjson.loads(body)["task_id"]] = t0

    try:
        asyncio.run(run_rate("127.0.0.1", port, lambda _: request, E2E_RATE, 2.0, lambda *a: None))
        sent.clear()
        finished.clear()
        load = asyncio.run(
            run_rate("127.0.0.1", port, lambda _: request, E2E_RATE, DURATION_S, on_answer)
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not set(sent) <= set(finished):
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(5)
        _stop(worker)
        _stop(api)
    lat = sorted((finished[t] - sent[t]) * 1000 for t in sent if t in finished)
    del server_ms

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else float("nan")

    return {
        "rate_per_s": E2E_RATE,
        "tasks": len(sent),
        "completed": len(lat),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "submit": load.summary(),
    }


def run(out: dict[str, Any]) -> None:
    # A freshly started broker runs interpreted until the JIT has compiled its hot paths;
    # measured cold, it would cost the API a third of its throughput.
    warm = bench_api(group_commit=True, warm_up_s=KAFKA_WARM_UP_S)
    print(f"broker warmed up for {KAFKA_WARM_UP_S:g} s (then {warm['throughput_rps']} req/s)")
    bare = bench_bare()
    print(f"bare FastAPI endpoint: {bare['throughput_rps']} req/s p50 {bare['p50_ms']} ms")
    naive = bench_api(group_commit=False)
    print(f"one transaction per request: {naive['throughput_rps']} req/s p50 {naive['p50_ms']} ms")
    grouped = bench_api(group_commit=True)
    print(
        f"autoglm submit (group commit): {grouped['throughput_rps']} req/s"
        f" p50 {grouped['p50_ms']} ms"
    )
    e2e = bench_e2e()
    print(f"echo end-to-end at {E2E_RATE}/s: p50 {e2e['p50_ms']} ms p99 {e2e['p99_ms']} ms")
    out["submit"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "bare_fastapi": bare,
        "one_txn_per_request": naive,
        "group_commit": grouped,
        "ratio_vs_bare": round(grouped["throughput_rps"] / max(bare["throughput_rps"], 1e-9), 3),
        "speedup_vs_one_txn": round(
            grouped["throughput_rps"] / max(naive["throughput_rps"], 1e-9), 1
        ),
        "targets": {"ratio_vs_bare": 0.6, "speedup_vs_one_txn": 20},
    }
    out["e2e_echo"] = {**e2e, "target_p50_ms": 20}


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["pipeline"]))
