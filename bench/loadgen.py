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
