"""Webhook delivery throughput, and how it holds up while one receiver hangs.

Measured end to end: results committed to Kafka -> dispatcher process -> signed POST arriving at
a local receiver. The baseline, in the same run, is a bare httpx POST loop to the same receiver
with the dispatcher's per-host concurrency. Needs the test Kafka and Redis
(`AUTOGLM_TEST_KAFKA`, `AUTOGLM_TEST_REDIS`; `make test-services-up` starts them).

    python -m bench.webhooks            # writes bench/results/webhooks.json
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
import redis
from confluent_kafka import Producer

from mcp.kafka import ensure_topics, producer_config
from mcp.names import Topics
from mcp.settings import Settings
from mcp.webhooks.signing import new_secret, webhook_headers
from schemas import TaskResult, TaskStatus, dumps, new_task_id, utcnow

KAFKA = os.environ.get("AUTOGLM_TEST_KAFKA", "127.0.0.1:19092")
REDIS = os.environ.get("AUTOGLM_TEST_REDIS", "redis://127.0.0.1:16379/0")
ROOT = Path(__file__).resolve().parents[1]
PER_HOST = 8
ROUNDS = 2


class Receiver:
    """A minimal keep-alive HTTP/1.1 server on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.arrivals: list[float] = []
        self.open_requests = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._serve, daemon=True).start()
        self.ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.arrivals.append(time.monotonic())
                if self.hang:
                    self.open_requests += 1
                    await asyncio.sleep(3600)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, count: int, timeout: float = 120.0) -> float:
        """Block until `count` requests arrived; returns the monotonic time of the last one."""
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.arrivals)}/{count} requests arrived")
            time.sleep(0.01)
        return self.arrivals[count - 1]

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _body() -> bytes:
    now = utcnow()
    return dumps(_result("http://127.0.0.1/hook", now))


def _result(url: str, now: Any) -> TaskResult:
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


async def _baseline(url: str, count: int, concurrency: int) -> float:
    """Signed POSTs from a bare httpx loop with `concurrency` workers: requests per second."""
    secret = [new_secret()]
    body = _body()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        remaining = iter(range(count))

        async def worker() -> None:
            for n in remaining:
                headers = webhook_headers(secret, f"msg_{n}", body)
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.monotonic() - start)


class Platform:
    """A dispatcher process with its own topics and keys, fed by a transactional producer."""

    def __init__(self, journal: bool = True) -> None:
        namespace = f"bench{uuid.uuid4().hex[:8]}."
        self.namespace = namespace
        self.settings = Settings.model_validate(
            {
                "dev_mode": True,
                "instance_id": namespace.rstrip("."),
                "kafka": {"bootstrap_servers": KAFKA, "topic_prefix": namespace, "partitions": 2},
                "redis": {"url": REDIS, "key_prefix": namespace},
            }
        )
        ensure_topics(self.settings, [])
        self.topics = Topics.of(self.settings)
        self.producer = Producer(
            producer_config(self.settings, self.topics.transactional_id("bench", "0"))
        )
        self.producer.init_transactions(30)
        env = {
            **os.environ,
            "AUTOGLM_DEV_MODE": "true",
            "AUTOGLM_LOG_LEVEL": "WARNING",
            "AUTOGLM_INSTANCE_ID": self.settings.instance_id,
            "AUTOGLM_KAFKA__BOOTSTRAP_SERVERS": KAFKA,
            "AUTOGLM_KAFKA__TOPIC_PREFIX": namespace,
            "AUTOGLM_KAFKA__PARTITIONS": "2",
            "AUTOGLM_REDIS__URL": REDIS,
            "AUTOGLM_REDIS__KEY_PREFIX": namespace,
            "AUTOGLM_WEBHOOKS__PER_HOST_CONCURRENCY": str(PER_HOST),
            "AUTOGLM_WEBHOOKS__TIMEOUT_S": "3600",
            "AUTOGLM_WEBHOOKS__JOURNAL": "true" if journal else "false",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autoglm", "dispatcher", "--slot", "bench"],
            cwd=ROOT,
            env=env,
        )

    def publish(self, urls: list[str], batch: int = 500) -> None:
        now = utcnow()
        for start in range(0, len(urls), batch):
            self.producer.begin_transaction()
            for url in urls[start : start + batch]:
                record = _result(url, now)
                self.producer.produce(
                    self.topics.results, dumps(record), key=record.task_id.encode()
                )
            self.producer.commit_transaction(30)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{self.namespace}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


def _rate(receiver: Receiver, before: int, count: int, started: float) -> float:
    return count / (receiver.wait(before + count) - started)


def _alone(platform: Platform, receiver: Receiver, count: int, name: str) -> float:
    """Deliveries per second to a healthy receiver, after one warm-up delivery."""
    done = len(receiver.arrivals)
    platform.publish([receiver.url(f"/{name}-warmup")])
    receiver.wait(done + 1, timeout=60)
    done = len(receiver.arrivals)
    started = time.monotonic()
    platform.publish([receiver.url(f"/{name}{i}") for i in range(count)])
    return _rate(receiver, done, count, started)


def run(out: dict[str, Any]) -> None:
    count = int(os.environ.get("BENCH_WEBHOOKS_N", "2000"))
    healthy = Receiver()
    hanging = Receiver(hang=True)
    platform = Platform()
    try:
        baseline = asyncio.run(_baseline(healthy.url("/baseline"), count, PER_HOST))
        # With and without the journal, taking turns: this machine's noise hits both alike.
        unjournaled = Platform(journal=False)
        rates: dict[str, list[float]] = {"without": [], "with": []}
        try:
            for turn in range(ROUNDS):
                rates["without"].append(_alone(unjournaled, healthy, count, f"r{turn}-"))
                rates["with"].append(_alone(platform, healthy, count, f"d{turn}-"))
        finally:
            unjournaled.close()
        alone = sum(rates["with"]) / ROUNDS
        redis_only = sum(rates["without"]) / ROUNDS

        stuck = 200
        platform.publish([hanging.url(f"/h{i}") for i in range(stuck)])
        hanging.wait(PER_HOST, timeout=30)
        done = len(healthy.arrivals)
        started = time.monotonic()
        platform.publish([healthy.url(f"/d{i}") for i in range(count)])
        beside_hang = _rate(healthy, done, count, started)
        out["webhooks"] = {
            "deliveries": count,
            "per_host_concurrency": PER_HOST,
            "baseline_httpx_posts_per_s": round(baseline, 1),
            "dispatcher_deliveries_per_s": round(alone, 1),
            "dispatcher_vs_baseline": round(alone / baseline, 3),
            "without_journal_deliveries_per_s": round(redis_only, 1),
            "rounds": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "journal_vs_without": round(alone / redis_only, 3),
            "with_hanging_receiver": {
                "hanging_deliveries_pending": stuck,
                "hanging_requests_open": hanging.open_requests,
                "healthy_deliveries_per_s": round(beside_hang, 1),
                "healthy_rate_vs_no_hang": round(beside_hang / alone, 3),
            },
            "note": "end to end: Kafka commit -> dispatcher -> signed POST received; "
            "baseline is a bare httpx loop with the same per-host concurrency; "
            "without_journal is the dispatcher with webhooks.journal=false (delivery states in "
            "Redis only, as before they were committed to webhook-deliveries)",
        }
    finally:
        platform.close()
        healthy.close()
        hanging.close()


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["webhooks"]))
