"""Bare client loops for the webhook benchmark's baseline, in a process of their own (as the
dispatcher is): `concurrency` workers POST the same signed body to one URL, over keep-alive
connections, and the rate is printed as JSON.

    python -m bench.webhook_client httpx http://127.0.0.1:8080/hook 2000 8
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

import aiohttp
import httpx
import orjson
import uvloop

from mcp.webhooks.signing import new_secret, webhook_headers
from schemas import TaskResult, TaskStatus, dumps, new_task_id, utcnow

Post = Callable[[dict[str, str]], Awaitable[None]]


def body() -> bytes:
    return dumps(result("http://127.0.0.1/hook", utcnow()))


def result(url: str, now: datetime) -> TaskResult:
    """A finished echo task whose webhook the benchmarks deliver."""
    return TaskResult(
        task_id=new_task_id(),
        status=TaskStatus.SUCCEEDED,
        model="echo",
        action="generate",
        attempts=1,
        created_at=now,
        started_at=now,
        finished_at=now,
        result={"text": "hello " * 20},
        callback_url=url,
    )


async def _loop(post: Post, count: int, concurrency: int) -> tuple[float, float]:
    """Requests per second, and CPU seconds of this process per request."""
    secret = [new_secret()]
    payload = body()
    remaining: Iterator[int] = iter(range(count))

    async def worker() -> None:
        for n in remaining:
            await post(webhook_headers(secret, f"msg_{n}", payload))

    await post(webhook_headers(secret, "msg_warmup", payload))
    start, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.monotonic() - start), (time.process_time() - cpu) / count


async def with_httpx(url: str, count: int, concurrency: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    payload = body()
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def post(headers: dict[str, str]) -> None:
            response = await client.post(url, content=payload, headers=headers)
            response.raise_for_status()

        return await _loop(post, count, concurrency)


async def with_aiohttp(url: str, count: int, concurrency: int) -> tuple[float, float]:
    payload = body()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(headers: dict[str, str]) -> None:
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                response.raise_for_status()

        return await _loop(post, count, concurrency)


CLIENTS = {"httpx": with_httpx, "aiohttp": with_aiohttp}


def main(argv: list[str]) -> int:
    client, url, count, concurrency = argv[0], argv[1], int(argv[2]), int(argv[3])
    rate, cpu_s = uvloop.run(CLIENTS[client](url, count, concurrency))
    answer = {"client": client, "posts_per_s": round(rate, 1), "cpu_ms_per_post": cpu_s * 1000}
    sys.stdout.write(orjson.dumps(answer).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
