"""A small HTTP/1.1 load generator on raw asyncio sockets (keep-alive, fixed concurrency).

Python HTTP clients cost more CPU per request than the servers they measure; on a 2-core
machine that would cap every number at the client's speed, so requests are pre-encoded bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson


@dataclass
class LoadResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else 0.0

        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        return {
            "requests": self.sent,
            "ok": ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(ok / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
        }


def post_request(
    host: str,
    port: int,
    path: str,
    body: Mapping[str, object],
    headers: dict[str, str] | None = None,
) -> bytes:
    payload = orjson.dumps(body)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def run_load(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    concurrency: int,
    duration_s: float,
    keep_bodies: bool = False,
) -> LoadResult:
    """Closed loop: `concurrency` connections each send the next request when answered."""
    result = LoadResult()
    counter = 0
    stop_at = time.perf_counter() + duration_s

    async def connection() -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                counter += 1
                request = make_request(counter)
                t0 = time.perf_counter()
                writer.write(request)
                status, body = await _read_response(reader)
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.sent += 1
                if keep_bodies:
                    result.bodies.append(body)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def run_rate(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    rate_per_s: float,
    duration_s: float,
    on_answer: Callable[[int, int, bytes, float], None],
    connections: int = 16,
) -> LoadResult:
    """Open loop: requests start at a fixed rate whatever the answers' pace."""
    result = LoadResult()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    total = int(rate_per_s * duration_s)
    started = time.perf_counter()

    async def one(i: int) -> None:
        reader, writer = await pool.get()
        t0 = time.perf_counter()
        writer.write(make_request(i))
        status, body = await _read_response(reader)
        pool.put_nowait((reader, writer))
        result.latencies_ms.append((time.perf_counter() - t0) * 1000)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.sent += 1
        on_answer(i, status, body, t0)

    tasks = []
    for i in range(total):
        delay = started + i / rate_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return result


def get_request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


@dataclass
class Tracked:
    """One task of `run_until_visible`: wall-clock times (`time.time()`), so that they can be set
    against the timestamps the servers wrote."""

    sent: float
    accepted: float = 0.0
    visible: float = 0.0
    polls: int = 0
    final: bytes = b""


async def run_until_visible(
    host: str,
    port: int,
    submit: bytes,
    task_id_of: Callable[[bytes], str],
    poll_path: Callable[[str], str],
    is_done: Callable[[bytes], bool],
    rate_per_s: float,
    duration_s: float,
    poll_interval_s: float = 0.001,
    give_up_s: float = 30.0,
    submit_connections: int = 16,
    poll_connections: int = 32,
) -> list[Tracked]:
    """Open loop at a fixed rate: each task is submitted, then polled every `poll_interval_s`
    (or as fast as the poll connections allow) until `is_done` says the answer shows its result.
    The same method serves every system measured, so their numbers compare."""
    submits: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    polls: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(submit_connections):
        submits.put_nowait(await asyncio.open_connection(host, port))
    for _ in range(poll_connections):
        polls.put_nowait(await asyncio.open_connection(host, port))
    tracked: list[Tracked] = []

    async def one() -> None:
        task = Tracked(sent=time.time())
        tracked.append(task)
        reader, writer = await submits.get()
        writer.write(submit)
        status, body = await _read_response(reader)
        submits.put_nowait((reader, writer))
        task.accepted = time.time()
        if not 200 <= status < 300:
            return
        request = get_request(host, port, poll_path(task_id_of(body)))
        give_up = task.sent + give_up_s
        while time.time() < give_up:
            reader, writer = await polls.get()
            writer.write(request)
            status, body = await _read_response(reader)
            polls.put_nowait((reader, writer))
            task.polls += 1
            if status == 200 and is_done(body):
                task.visible = time.time()
                task.final = body
                return
            await asyncio.sleep(poll_interval_s)

    started = time.perf_counter()
    running = []
    for i in range(int(rate_per_s * duration_s)):
        delay = started + i / rate_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        running.append(asyncio.create_task(one()))
    await asyncio.gather(*running)
    for pool in (submits, polls):
        while not pool.empty():
            _, writer = pool.get_nowait()
            writer.close()
    return tracked
