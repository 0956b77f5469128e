"""End to end against Celery, same run: what teams build today for async inference.

- celery: Celery 5, Redis broker and result backend (its own Redis database), behind FastAPI
  (`POST` -> `.delay()` -> 202 with the id; `GET` -> `AsyncResult` state), one worker process
  (solo pool) running an echo task;
- autoglm: our API (group commit, projector in the API process) and one echo worker process,
  with the default settings (`celery_e2e` measures other configurations beside them).

Measured for both: submit throughput (closed loop, same body, same connections, no worker
running), and submit -> result visible to a poller at fixed rates (open loop; the same loop
for both; the body asks for the result only, no token stream), two ways (`METHODS`): each task
polled every ~1 ms, or as fast as `POLL_CONNECTIONS` connections go; and one long poll per task
(`GET /v1/tasks/{id}?wait=30`: ours answers when the task's end wakes it, Celery's front waits
in `AsyncResult.get`). Ours also reports where a task's
time goes, from the timestamps in its records and a read_committed watcher of `task-events`
(`stages_ms`), and both the CPU each process used meanwhile (`cpu_cores`). At the lowest rate,
Kafka's floor under ours is measured last (`bench.kafka_floor`: the two transactions per task
with nothing else).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import orjson
import redis

from bench import gc_pauses, kafka_floor, server_times
from bench.cpu import cpu_s, family
from bench.distribution import latency_ms
from bench.events import TerminalEvents
from bench.jit import warm_until_compiled
from bench.loadgen import Tracked, post_request, run_until_visible
from bench.pipeline import (
    BODY,
    CONCURRENCY,
    DURATION_S,
    KAFKA,
    KAFKA_WARM_UP_S,
    REDIS,
    _closed_loop,
    _env,
    _free_port,
    _start,
    _stop,
    bench_api,
    bench_bare,
)
from bench.server_times import SERIES
from mcp.settings import Settings
from schemas import TERMINAL_STATUSES

RATES = tuple(float(r) for r in os.environ.get("BENCH_E2E_RATES", "100,1000").split(","))
E2E_DURATION_S = float(os.environ.get("BENCH_E2E_DURATION_S", "5"))
E2E_WARM_UP_S = float(os.environ.get("BENCH_E2E_WARM_UP_S", "30"))
E2E_WARM_UP_RATE = 300.0
# After the warm-up, more of it in steps until the broker's JIT compilers use less than this
# (in cores), for so long at most: configurations measured while they still compiled got faster
# in the order measured.
JIT_STEP_S = 10.0
JIT_QUIET_CORES = 0.1
JIT_MOST_S = float(os.environ.get("BENCH_E2E_JIT_MOST_S", "120"))
# GETs in flight at most: polling every 1 ms on more connections than this would take the CPU
# from the systems measured (2 cores here) and measure the pollers instead.
POLL_CONNECTIONS = int(os.environ.get("BENCH_POLL_CONNECTIONS", "8"))
# Submissions in flight at most. At 1,000/s, 16 connections capped both systems below the rate
# (Little's law: 16 / 1,000/s = 16 ms per submission at most, our group commit takes about that
# under load), so that tasks queued in the load generator, seconds before they were sent.
SUBMIT_CONNECTIONS = int(os.environ.get("BENCH_SUBMIT_CONNECTIONS", "64"))
# How a client learns of the end, each measured for both systems: `poll` (GET every ~1 ms) and
# `wait` (one long poll, `GET /v1/tasks/{id}?wait=N`: ours wakes on the task's end, Celery's
# waits in `AsyncResult.get`). A long poll holds its connection: these many at most.
METHODS = tuple(os.environ.get("BENCH_E2E_METHODS", "poll,wait").split(","))
WAIT_S = 30
WAIT_CONNECTIONS = int(os.environ.get("BENCH_WAIT_CONNECTIONS", "256"))
CELERY_REDIS = REDIS.rsplit("/", 1)[0] + "/1"  # the bench Redis, a database of Celery's own
# End to end, the same work on both sides: the result only. Our echo would otherwise also stream
# the prompt back word by word into a Redis stream (`GET /v1/tasks/{id}/stream`), which Celery's
# echo has no counterpart of.
E2E_BODY = {**BODY, "payload": {**cast(dict[str, Any], BODY["payload"]), "stream": False}}
# The watcher of task-events (stage breakdown only) waits this long for records per fetch; the
# broker answers a fetch as soon as a commit makes records readable, so a short wait only costs
# the broker CPU (1 ms: about 0.1 of a core) that Celery's side is not charged.
WATCH_FETCH_WAIT_MS = 100
STATE = Path.home() / ".cache" / "autoglm-mcp"  # where deploy/ keeps the servers' pid files


def _done(body: bytes) -> bool:
    return orjson.loads(body).get("status") in TERMINAL_STATUSES


def _task_id(body: bytes) -> str:
    return str(orjson.loads(body)["task_id"])


def _measure(port: int, rate: float, duration_s: float, method: str = "poll") -> list[Tracked]:
    """`poll`: GET every ~1 ms until the task shows its end; `wait`: one long poll per task
    (`?wait=`), held on a connection of its own."""
    waits = method == "wait"
    return asyncio.run(
        run_until_visible(
            "127.0.0.1",
            port,
            post_request("127.0.0.1", port, "/v1/tasks", E2E_BODY),
            _task_id,
            (lambda task_id: f"/v1/tasks/{task_id}?wait={WAIT_S}")
            if waits
            else (lambda task_id: f"/v1/tasks/{task_id}"),
            _done,
            rate,
            duration_s,
            submit_connections=SUBMIT_CONNECTIONS,
            poll_connections=WAIT_CONNECTIONS if waits else POLL_CONNECTIONS,
        )
    )


def _server_pid(name: str) -> int | None:
    """The bench's Kafka broker or Redis server (`kafka` / `redis`), from deploy/'s pid file."""
    port = (KAFKA if name == "kafka" else REDIS).rsplit(":", 1)[1].split("/")[0]
    path = STATE / (
        f"kafka-data-{port}/kafka.pid" if name == "kafka" else f"redis-{port}/redis.pid"
    )
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _measure_cpu(
    port: int, rate: float, pids: dict[str, int | None], method: str = "poll"
) -> tuple[list[Tracked], dict[str, float]]:
    """`_measure`, and the CPU each process used meanwhile, in cores (the load generator and
    its watcher of task-events count as `load_generator`; an API in several processes, all of
    them)."""
    known = {name: family(pid) for name, pid in pids.items() if pid is not None}
    known["load_generator"] = [os.getpid()]
    before = {name: sum(cpu_s(pid) for pid in group) for name, group in known.items()}
    began = time.perf_counter()
    tracked = _measure(port, rate, E2E_DURATION_S, method)
    elapsed = time.perf_counter() - began
    return tracked, {
        name: round((sum(cpu_s(pid) for pid in group) - before[name]) / elapsed, 2)
        for name, group in known.items()
    }


def _ready(port: int) -> None:
    """A few tasks through, however long the worker takes to join (not measured)."""
    if not all(t.visible for t in _measure(port, 10, 0.3)):
        raise RuntimeError("no task came through")


def _key(rate: float, method: str) -> str:
    """A result's key: `100_per_s` (polling), `100_per_s_wait` (long polls)."""
    return f"{rate:g}_per_s" + ("" if method == "poll" else f"_{method}")


def _summary(tracked: list[Tracked], rate: float) -> dict[str, Any]:
    seen = [t for t in tracked if t.visible]
    return {
        "rate_per_s": rate,
        "tasks": len(tracked),
        "visible": len(seen),
        **latency_ms([(t.visible - t.sent) * 1000 for t in seen]),
        "submit": latency_ms([(t.accepted - t.sent) * 1000 for t in tracked if t.accepted]),
        "polls_per_task": round(sum(t.polls for t in seen) / max(len(seen), 1), 1),
    }


def _at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _stages(tracked: list[Tracked], committed: dict[str, float]) -> dict[str, Any]:
    """Where our tasks' time goes, submit -> visible, in consecutive stages (wall clock, one host):
    - submit_to_202: the request, group-commit wait, the Kafka commit and the answer;
    - queued_to_running: 202 -> the worker's `running` record (fetch of the committed record,
      its batching wait);
    - run: `running` -> the result (the echo model);
    - result_to_committed: the result -> its terminal event read by a read_committed consumer
      (the worker's commit cadence, the transaction commit, a fetch);
    - committed_to_visible: -> a poll shows it (projector consume, Redis write, the poll gap)."""
    stages: dict[str, list[float]] = {
        "submit_to_202": [],
        "queued_to_running": [],
        "run": [],
        "result_to_committed": [],
        "committed_to_visible": [],
    }
    for t in tracked:
        if not t.visible:
            continue
        view = orjson.loads(t.final)
        if not view.get("started_at") or not view.get("finished_at"):
            continue
        started, finished = _at(view["started_at"]), _at(view["finished_at"])
        seen = committed.get(view["task_id"])
        stages["submit_to_202"].append((t.accepted - t.sent) * 1000)
        stages["queued_to_running"].append((started - t.accepted) * 1000)
        stages["run"].append((finished - started) * 1000)
        if seen is not None:
            stages["result_to_committed"].append((seen - finished) * 1000)
            stages["committed_to_visible"].append((t.visible - seen) * 1000)
    return {name: {**latency_ms(v), "n": len(v)} for name, v in stages.items()}


def _ours_e2e(rates: tuple[float, ...] = RATES, processes: int = 1, **extra: str) -> dict[str, Any]:
    """Ours at each rate: an API in `processes` processes (`autoglm api --processes N`; its
    collector pauses and server times are those of the slot that answers /metrics) and one echo
    worker."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    env = _env(prefix, **extra)
    api = _start(
        ["-m", "autoglm", "api", "--port", str(port), "--processes", str(processes)],
        env,
        port,
        "/readyz",
    )
    worker_metrics = _free_port()
    worker = _start(
        ["-m", "autoglm", "worker", "--model", "echo", "--metrics-port", str(worker_metrics)],
        env,
        None,
        "",
    )
    # The collector's pauses in the API and the worker (`mcp.heap`) and the time spent in each
    # step (`bench.server_times`), from one read of their /metrics before and after each window.
    gc_urls = {
        "api": f"http://127.0.0.1:{port}/metrics",
        "worker": f"http://127.0.0.1:{worker_metrics}/metrics",
    }
    # An API without its projector has one of its own beside it.
    alone = extra.get("AUTOGLM_SERVER__RUN_PROJECTOR") == "false"
    projector = _start(["-m", "autoglm", "projector"], env, None, "") if alone else None
    settings = Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})
    out: dict[str, Any] = {}
    try:
        _ready(port)
        pids = {
            "api": api.pid,
            "worker": worker.pid,
            "projector": projector.pid if projector else None,
            "kafka": _server_pid("kafka"),
            "redis": _server_pid("redis"),
        }
        for n, (rate, method) in enumerate((r, m) for r in rates for m in METHODS):
            # The watcher is a read_committed consumer of our broker's, which Celery's side has
            # no counterpart of: it runs while polling is measured (the stages), not with long
            # polls (the comparison).
            watcher = (
                TerminalEvents(settings, f"{prefix}watch{n}", time.time, WATCH_FETCH_WAIT_MS)
                if method == "poll"
                else None
            )
            _measure(port, rate, 1.0, method)  # warm-up at this rate, not measured
            before = {name: gc_pauses.scrape(url) for name, url in gc_urls.items()}
            tracked, cpu = _measure_cpu(port, rate, pids, method)
            after = {name: gc_pauses.scrape(url) for name, url in gc_urls.items()}
            if watcher is not None:
                time.sleep(0.5)  # the watcher's last reads
                watcher.stop()
            out[_key(rate, method)] = {
                **_summary(tracked, rate),
                "api_processes": processes,
                "cpu_cores": cpu,
                "stages_ms": _stages(tracked, watcher.at if watcher is not None else {}),
                "gc_pauses": {
                    p: gc_pauses.added(gc_pauses.counts(before[p]), gc_pauses.counts(after[p]))
                    for p in gc_urls
                },
                "server_times": {
                    p: server_times.added(
                        server_times.sums(before[p], n), server_times.sums(after[p], n)
                    )
                    for p, n in SERIES.items()
                },
            }
    finally:
        _stop(worker)
        _stop(api)
        if projector is not None:
            _stop(projector)
    return out


def _celery_env() -> dict[str, str]:
    return {**os.environ, "BENCH_CELERY_REDIS": CELERY_REDIS}


def _celery_api() -> tuple[subprocess.Popen[bytes], int]:
    redis.Redis.from_url(CELERY_REDIS).flushdb()
    port = _free_port()
    return _start(["-m", "bench.celery_api", str(port)], _celery_env(), port, "/docs"), port


def _celery_submit() -> dict[str, Any]:
    api, port = _celery_api()
    try:
        return _closed_loop(port)
    finally:
        _stop(api)
        redis.Redis.from_url(CELERY_REDIS).flushdb()  # the tasks no worker ran


def _celery_e2e() -> dict[str, Any]:
    api, port = _celery_api()
    worker = _start(
        [
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
        ],
        _celery_env(),
        None,
        "",
    )
    out: dict[str, Any] = {}
    try:
        _ready(port)
        pids = {"api": api.pid, "worker": worker.pid, "redis": _server_pid("redis")}
        for rate, method in ((r, m) for r in RATES for m in METHODS):
            _measure(port, rate, 1.0, method)
            tracked, cpu = _measure_cpu(port, rate, pids, method)
            out[_key(rate, method)] = {**_summary(tracked, rate), "cpu_cores": cpu}
    finally:
        _stop(worker)
        _stop(api)
        redis.Redis.from_url(CELERY_REDIS).flushdb()
    return out


def _ours_submit() -> dict[str, Any]:
    port = _free_port()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    api = _start(["-m", "autoglm", "api", "--port", str(port)], _env(prefix), port, "/readyz")
    try:
        return _closed_loop(port)
    finally:
        _stop(api)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _step(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    before = _load()
    result = fn()
    return {**result, "load_average_before": before, "load_average_after": _load()}


def run(out: dict[str, Any]) -> None:
    warm = bench_api(group_commit=True, warm_up_s=KAFKA_WARM_UP_S)  # the broker's JIT
    print(f"broker warmed up for {KAFKA_WARM_UP_S:g} s (then {warm['throughput_rps']} req/s)")
    bare = _step(bench_bare)
    ours = _step(_ours_submit)
    celery = _step(_celery_submit)
    for name, r in (("bare", bare), ("autoglm", ours), ("celery", celery)):
        print(f"submit {name}: {r['throughput_rps']} req/s p50 {r['p50_ms']} ms")
    out["submit"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "bare_fastapi": bare,
        "autoglm": ours,
        "celery": celery,
        "autoglm_vs_celery": round(ours["throughput_rps"] / max(celery["throughput_rps"], 1e-9), 2),
    }
    e2e(out)


def _rates(extra: dict[str, str]) -> dict[str, Any]:
    """A variant's settings; `BENCH_E2E_RATES` among them measures it at those rates only,
    `BENCH_API_PROCESSES` runs its API in that many processes (`autoglm api --processes N`)."""
    knobs = ("BENCH_E2E_RATES", "BENCH_API_PROCESSES")
    settings: dict[str, Any] = {k: v for k, v in extra.items() if k not in knobs}
    if "BENCH_E2E_RATES" in extra:
        settings["rates"] = tuple(float(r) for r in extra["BENCH_E2E_RATES"].split(","))
    if "BENCH_API_PROCESSES" in extra:
        settings["processes"] = int(extra["BENCH_API_PROCESSES"])
    return settings


def _warm_e2e() -> dict[str, Any]:
    """Tasks through the whole pipeline, not measured: a fresh broker runs its consume, fetch and
    transaction-marker paths interpreted until its JIT has compiled them (measured without this,
    the first configuration paid for it: broker CPU fell from 1.1 to 0.6 of a core, and p50 from
    54 to 18 ms, over four identical rounds). `E2E_WARM_UP_S` first, then more in steps while
    the broker's compiler threads still work (`bench.jit`)."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    env = _env(prefix)
    api = _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz")
    worker = _start(["-m", "autoglm", "worker", "--model", "echo"], env, None, "")
    try:
        _ready(port)
        tracked = _measure(port, E2E_WARM_UP_RATE, E2E_WARM_UP_S)
        more_s, compiler_cores = warm_until_compiled(
            _server_pid("kafka"),
            lambda s: _measure(port, E2E_WARM_UP_RATE, s),
            JIT_STEP_S,
            JIT_QUIET_CORES,
            JIT_MOST_S,
        )
    finally:
        _stop(worker)
        _stop(api)
    return {
        "seconds": E2E_WARM_UP_S + more_s,
        "through_per_s": round(sum(1 for t in tracked if t.visible) / E2E_WARM_UP_S, 1),
        "compiler_cores_per_step": compiler_cores,
    }


def e2e(out: dict[str, Any], variants: dict[str, dict[str, str]] | None = None) -> None:
    """Submit -> visible to a poller at each rate: ours (each variant: settings as environment
    variables; default, the defaults) and Celery, in this run."""
    variants = variants or {"autoglm": {}}
    warm = _warm_e2e()
    print(
        f"pipeline warmed up for {warm['seconds']:g} s at {E2E_WARM_UP_RATE:g}/s "
        f"({warm['through_per_s']}/s through; broker compiler cores per "
        f"{JIT_STEP_S:g} s step after the first {E2E_WARM_UP_S:g} s: "
        f"{warm['compiler_cores_per_step']})"
    )
    # The first configuration started after the warm-up ran slower than the same settings started
    # next, in every run (broker 0.8-0.9 of a core against 0.55; p50 24-30 ms against 14-16 ms),
    # also after 60 s of warm-up and after 20 s more of lone tasks: a configuration of the
    # defaults is measured first and set apart (`warm_up_configuration`), not compared.
    thrown = _step(partial(_ours_e2e, rates=(min(RATES),)))
    first = thrown[_key(min(RATES), METHODS[0])]
    print(f"warm-up configuration: p50 {first['p50_ms']} ms p99 {first['p99_ms']} ms (set apart)")
    ours = {name: _step(partial(_ours_e2e, **_rates(extra))) for name, extra in variants.items()}
    celery_e2e = _step(_celery_e2e)
    floor = _step(partial(kafka_floor.measure, min(RATES), E2E_DURATION_S))
    print(
        f"e2e Kafka's floor at {min(RATES):g}/s (two transactions per task, nothing else):"
        f" p50 {floor['p50_ms']} ms p99 {floor['p99_ms']} ms max {floor['max_ms']} ms"
        f" ({floor['visible']}/{floor['tasks']} visible); stages {floor['stages_ms']}"
    )
    for rate, method in ((r, m) for r in RATES for m in METHODS):
        key = _key(rate, method)
        measured = ((name, r[key]) for name, r in ours.items() if key in r)
        systems = [*measured, ("celery", celery_e2e[key])]
        for name, r in systems:
            print(
                f"e2e {name} at {rate:g}/s ({method}): p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms"
                f" p99.9 {r['p999_ms']} ms max {r['max_ms']} ms"
                f" ({r['visible']}/{r['tasks']} visible)"
            )
        for name, r in systems:
            print(f"   {name} CPU (cores): {r['cpu_cores']}")
        for name, r in systems[:-1]:
            print(f"   {name} collector pauses: {r['gc_pauses']}")
            print(f"   {name} stages:")
            for stage, d in r["stages_ms"].items():
                print(f"     {stage}: p50 {d['p50_ms']} p99 {d['p99_ms']} ms")
    out["e2e"] = {
        "warm_up": warm,
        "warm_up_configuration": thrown,
        "duration_s": E2E_DURATION_S,
        "methods": METHODS,
        "poll_interval_ms": 1,
        "poll_connections": POLL_CONNECTIONS,
        "wait_s": WAIT_S,
        "wait_connections": WAIT_CONNECTIONS,
        "submit_connections": SUBMIT_CONNECTIONS,
        **{name: {"settings": variants[name], **r} for name, r in ours.items()},
        "celery": celery_e2e,
        "kafka_floor": floor,
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["celery_baseline"]))
