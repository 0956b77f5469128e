"""Overload: 1,000 connections posting echo tasks for 30 s, with and without admission control.

Baseline in the same run: the API's unloaded maximum (64 connections, closed loop), measured
in each of the two API processes just before its overload; the higher of the two counts. Under
overload the clients behave as the SDK does: a 503 with Retry-After makes that connection wait
Retry-After seconds (times a random 1-2, so retries do not arrive in lockstep) before its next
request; every other answer is followed by the next request at once.

Both measurements use the same generator (raw asyncio streams on uvloop, one pre-encoded
request) and the same count: the answers received within the load's window, over the window's
length. The CPU seconds of the API, the generator and the broker during the overload say where
the machine's two cores went.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from bench.cpu import cpu_s, rss_mb
from bench.loadgen import post_request
from bench.pipeline import BODY, KAFKA, _env, _free_port, _start, _stop, bench_api

CONNECTIONS = int(os.environ.get("BENCH_OVERLOAD_CONNECTIONS", "1000"))
UNLOADED_CONNECTIONS = 64
UNLOADED_S = float(os.environ.get("BENCH_DURATION_S", "8"))
DURATION_S = float(os.environ.get("BENCH_OVERLOAD_DURATION_S", "30"))
WARM_UP_S = float(os.environ.get("BENCH_OVERLOAD_WARM_UP_S", "20"))
P99_TARGET_MS = 250.0
THROUGHPUT_TARGET = 0.9


@dataclass
class Overload:
    accepted_ms: list[float] = field(default_factory=list)
    refused: int = 0
    other: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    reconnects: int = 0
    seconds: float = 0.0


def broker_pid() -> int | None:
    """The bench's broker: the process whose data directory is named after its port."""
    mark = f"kafka-data-{KAFKA.rsplit(':', 1)[1]}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core counted."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


async def _read(reader: asyncio.StreamReader) -> tuple[int, float]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, retry_after = 0, 0.0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value.strip())
        elif name.lower() == b"retry-after":
            retry_after = float(value.strip())
    if length:
        await reader.readexactly(length)
    return status, retry_after


async def overload(port: int, connections: int, duration_s: float) -> Overload:
    """`connections` clients for `duration_s`; what was answered within that window counts, over
    the window's length (a client asked to come back after the window does not stretch it)."""
    result = Overload()
    body: dict[str, object] = dict(BODY)
    request = post_request("127.0.0.1", port, "/v1/tasks", body)
    clock = time.perf_counter
    stop_at = clock() + duration_s

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while clock() < stop_at:
                if reader.at_eof():
                    # The server closed the idle connection (its keep-alive ran out while this
                    # client waited Retry-After): a new one, as an HTTP client's pool does.
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    result.reconnects += 1
                t0 = clock()
                writer.write(request)
                status, retry_after = await _read(reader)
                t1 = clock()
                if t1 > stop_at:
                    break
                if status == 202:
                    result.accepted_ms.append((t1 - t0) * 1000)
                elif status == 503 and retry_after:
                    result.refused += 1
                    pause = retry_after * (1 + random.random())
                    await asyncio.sleep(min(pause, stop_at - t1))
                else:
                    result.other[status] = result.other.get(status, 0) + 1
        except (OSError, asyncio.IncompleteReadError):
            result.errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.seconds = duration_s
    return result


def measure(port: int, connections: int, duration_s: float) -> Overload:
    """The same generator for the unloaded maximum and the overload: raw asyncio streams with a
    pre-encoded request, on uvloop (the generator shares the machine's two cores with the API
    and the broker, so its own CPU per request matters)."""
    return uvloop.run(overload(port, connections, duration_s))


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else 0.0


def unloaded_max(port: int, pid: int) -> dict[str, Any]:
    """The 64-connection closed loop (below the admission floor: nothing is refused)."""
    measure(port, UNLOADED_CONNECTIONS, 1.0)  # warm-up
    api_cpu = cpu_s(pid)
    r = measure(port, UNLOADED_CONNECTIONS, UNLOADED_S)
    api_cpu = cpu_s(pid) - api_cpu
    return {
        "requests": len(r.accepted_ms) + r.refused + sum(r.other.values()),
        "ok": len(r.accepted_ms),
        "refused": r.refused,
        "seconds": r.seconds,
        "throughput_rps": round(len(r.accepted_ms) / r.seconds, 1),
        "p50_ms": _pct(r.accepted_ms, 0.5),
        "p99_ms": _pct(r.accepted_ms, 0.99),
        "api_ms_per_accepted": round(api_cpu * 1000 / max(len(r.accepted_ms), 1), 3),
    }


def run_api(admission: bool) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    extra = {
        "AUTOGLM_SERVER__RUN_PROJECTOR": "false",
        "AUTOGLM_SERVER__ADMISSION_CONTROL": str(admission).lower(),
    }
    proc = _start(
        ["-m", "autoglm", "api", "--port", str(port)], _env(prefix, **extra), port, "/readyz"
    )
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], rss_mb(proc.pid))

    try:
        # The unloaded maximum is measured in both processes, just before their overload; the
        # higher one is the baseline.
        unloaded = unloaded_max(port, proc.pid)
        rss_before = rss_mb(proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        broker = broker_pid()
        broker_cpu = cpu_s(broker) if broker else 0.0
        api_cpu, own_cpu, (busy, total) = cpu_s(proc.pid), time.process_time(), machine_busy()
        loaded = measure(port, CONNECTIONS, DURATION_S)
        busy_after, total_after = machine_busy()
        api_cpu = cpu_s(proc.pid) - api_cpu
        broker_cpu = cpu_s(broker) - broker_cpu if broker else 0.0
        own_cpu = time.process_time() - own_cpu
        done.set()
        sampler.join()
        time.sleep(2)  # what stays after the burst
        rss_after = rss_mb(proc.pid)
    finally:
        done.set()
        _stop(proc)
    accepted = len(loaded.accepted_ms)
    return {
        "admission_control": admission,
        "unloaded": unloaded,
        "accepted": accepted,
        "accepted_rps": round(accepted / loaded.seconds, 1),
        "refused": loaded.refused,
        "other_statuses": {str(k): v for k, v in loaded.other.items()},
        "connection_errors": loaded.errors,
        "reconnects": loaded.reconnects,
        "accepted_p50_ms": _pct(loaded.accepted_ms, 0.5),
        "accepted_p99_ms": _pct(loaded.accepted_ms, 0.99),
        "accepted_max_ms": _pct(loaded.accepted_ms, 1.0),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_peak": round(peak[0], 1),
        "rss_mb_after": round(rss_after, 1),
        "seconds": round(loaded.seconds, 1),
        # Where the two cores went during the overload (the broker and anything else: the rest).
        "cpu": {
            "api_s": round(api_cpu, 1),
            "generator_s": round(own_cpu, 1),
            "broker_s": round(broker_cpu, 1),
            "machine_busy_s": round(busy_after - busy, 1),
            # Processes other than these three (on a shared machine: other people's work).
            "other_s": round(busy_after - busy - api_cpu - own_cpu - broker_cpu, 1),
            "machine_s": round(total_after - total, 1),
            "api_ms_per_accepted": round(api_cpu * 1000 / max(accepted, 1), 3),
        },
    }


def _line(r: dict[str, Any], unloaded_rps: float) -> str:
    return (
        f"admission {'on ' if r['admission_control'] else 'off'}: accepted {r['accepted_rps']}/s "
        f"({r['accepted_rps'] / unloaded_rps:.0%} of unloaded {unloaded_rps}/s), "
        f"refused {r['refused']}, accepted p99 {r['accepted_p99_ms']} ms "
        f"(max {r['accepted_max_ms']} ms), RSS {r['rss_mb_before']} -> {r['rss_mb_after']} MB, "
        f"CPU s: API {r['cpu']['api_s']}, generator {r['cpu']['generator_s']}, "
        f"broker {r['cpu']['broker_s']}, "
        f"other processes {r['cpu']['other_s']}, machine busy {r['cpu']['machine_busy_s']} "
        f"of {r['cpu']['machine_s']}"
    )


def run(out: dict[str, Any]) -> None:
    bench_api(group_commit=True, warm_up_s=WARM_UP_S)  # a fresh broker runs cold until JIT-ed
    without = run_api(admission=False)
    with_control = run_api(admission=True)
    unloaded = max(
        (without.pop("unloaded"), with_control.pop("unloaded")),
        key=lambda r: float(r["throughput_rps"]),
    )
    rps = max(float(unloaded["throughput_rps"]), 1e-9)
    for r in (with_control, without):
        r["accepted_vs_unloaded_max"] = round(r["accepted_rps"] / rps, 3)
        print(_line(r, rps), flush=True)
    out["overload"] = {
        "connections": CONNECTIONS,
        "duration_s": DURATION_S,
        "clients": "each connection waits Retry-After x random(1, 2) after a 503",
        "unloaded_max": {"connections": UNLOADED_CONNECTIONS, **unloaded},
        "with_admission_control": with_control,
        "without_admission_control": without,
        "targets": {
            "accepted_vs_unloaded_max": THROUGHPUT_TARGET,
            "accepted_p99_ms": P99_TARGET_MS,
        },
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["overload"]))
