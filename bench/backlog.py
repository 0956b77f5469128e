"""Memory under a backlog: a worker facing 100,000 queued tasks, the dispatcher facing 50,000
results whose webhooks cannot be delivered (the receiver accepts connections and never answers).

Each process's RSS is sampled while it works through the backlog, with the platform's bounded
consumer prefetch and, as the baseline in the same run, with librdkafka's defaults (100,000
messages / 64 MiB fetched ahead).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.cpu import rss_mb
from bench.pipeline import KAFKA, _env, _start, _stop
from mcp.kafka import ensure_topics
from mcp.names import Topics
from mcp.settings import Settings
from schemas import AsyncTask, TaskResult, TaskStatus, dumps, utcnow

TASKS = int(os.environ.get("BENCH_BACKLOG_TASKS", "100000"))
WEBHOOKS = int(os.environ.get("BENCH_BACKLOG_WEBHOOKS", "50000"))
SAMPLE_S = float(os.environ.get("BENCH_BACKLOG_SAMPLE_S", "30"))
LIBRDKAFKA_DEFAULTS = {
    "AUTOGLM_KAFKA__CONSUMER_PREFETCH_MESSAGES": "100000",
    "AUTOGLM_KAFKA__CONSUMER_PREFETCH_KBYTES": "65536",
}


def _produce(settings: Settings, topic: str, values: Any) -> int:
    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "acks": "all"})
    count = 0
    for key, value in values:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    producer.flush(60)
    return count


def _tasks(n: int) -> Any:
    prompt = "Summarise the following in one sentence: the quick brown fox. " * 4
    for i in range(n):
        task = AsyncTask(model="echo", action="generate", payload={"prompt": prompt, "n": i})
        yield task.task_id.encode(), dumps(task)


def _results(n: int, url: str) -> Any:
    now = utcnow()
    for i in range(n):
        result = TaskResult(
            task_id=uuid.uuid4().hex,
            status=TaskStatus.SUCCEEDED,
            model="echo",
            action="generate",
            created_at=now,
            result={"echo": {"n": i, "text": "the quick brown fox " * 8}},
            callback_url=url,
        )
        yield result.task_id.encode(), dumps(result)


def _consumed(settings: Settings, group: str, topic: str) -> int:
    """How far `group` has committed through `topic`: the backlog it has worked through."""
    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(0, tp.offset) for tp in committed)
    finally:
        consumer.close()


def _sample(pid: int, seconds: float) -> dict[str, float]:
    peak, samples = 0.0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rss = round(rss_mb(pid), 1)
        peak = max(peak, rss)
        samples.append(rss)
        time.sleep(0.5)
    return {"rss_mb_first": samples[0], "rss_mb_peak": peak, "rss_mb_last": samples[-1]}


class HangingReceiver:
    """Accepts connections, reads, never answers: every delivery waits for its timeout."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):
                pass

        async def serve() -> None:
            server = await asyncio.start_server(hang, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await server.serve_forever()

        self._loop.run_until_complete(serve())


def worker_backlog(bounded: bool) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    env = _env(prefix, **({} if bounded else LIBRDKAFKA_DEFAULTS))
    settings = Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})
    ensure_topics(settings, ["echo"])
    produced = _produce(settings, Topics.of(settings).tasks("echo"), _tasks(TASKS))
    worker = _start(["-m", "autoglm", "worker", "--model", "echo"], env, None, "")
    try:
        memory = _sample(worker.pid, SAMPLE_S)
    finally:
        _stop(worker)
    topics = Topics.of(settings)
    done = _consumed(settings, topics.group("worker.echo"), topics.tasks("echo"))
    return {"bounded_prefetch": bounded, "backlog": produced, "processed": done, **memory}


def dispatcher_backlog(bounded: bool, receiver: HangingReceiver) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    extra = {"AUTOGLM_WEBHOOKS__ALLOW_NETWORKS": '["127.0.0.0/8"]'}
    env = _env(prefix, **extra, **({} if bounded else LIBRDKAFKA_DEFAULTS))
    settings = Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})
    ensure_topics(settings, [])
    url = f"http://127.0.0.1:{receiver.port}/hook"
    produced = _produce(settings, Topics.of(settings).results, _results(WEBHOOKS, url))
    dispatcher = _start(["-m", "autoglm", "dispatcher"], env, None, "")
    try:
        memory = _sample(dispatcher.pid, SAMPLE_S)
    finally:
        _stop(dispatcher)
    topics = Topics.of(settings)
    done = _consumed(settings, topics.group("dispatcher"), topics.results)
    return {"bounded_prefetch": bounded, "pending_webhooks": produced, "scheduled": done, **memory}


def run(out: dict[str, Any]) -> None:
    workers = [worker_backlog(True), worker_backlog(False)]
    receiver = HangingReceiver()
    dispatchers = [dispatcher_backlog(True, receiver), dispatcher_backlog(False, receiver)]
    for name, rows in (("worker", workers), ("dispatcher", dispatchers)):
        for r in rows:
            kind = "bounded prefetch " if r["bounded_prefetch"] else "librdkafka defaults"
            done = r.get("processed", r.get("scheduled"))
            print(
                f"{name} ({kind}): RSS peak {r['rss_mb_peak']} MB, last {r['rss_mb_last']} MB "
                f"over {SAMPLE_S:g} s ({done} records worked through)",
                flush=True,
            )
    out["backlog"] = {
        "sample_s": SAMPLE_S,
        "worker_100k_tasks": {"bounded": workers[0], "librdkafka_defaults": workers[1]},
        "dispatcher_50k_webhooks": {
            "bounded": dispatchers[0],
            "librdkafka_defaults": dispatchers[1],
        },
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["backlog"]))
