"""Webhook delivery throughput, and how it holds up while one receiver hangs.

Measured end to end: results committed to Kafka -> dispatcher process -> signed POST arriving at
a local receiver. The baselines, in the same run, are bare POST loops to the same receiver with
the dispatcher's per-host concurrency, one per HTTP client (httpx, and aiohttp, which the
dispatcher uses); the dispatcher is set against the best of them. Needs the test Kafka and Redis
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

import orjson
import redis
import uvloop
from confluent_kafka import Producer

from bench.cpu import CpuMeter, rss_mb, server_pid
from bench.jit import compiler_cpu_s, warm_until_compiled
from bench.webhook_client import result
from mcp.kafka import ensure_topics, producer_config
from mcp.names import Topics
from mcp.settings import Settings
from schemas import dumps, utcnow

KAFKA = os.environ.get("AUTOGLM_TEST_KAFKA", "127.0.0.1:19092")
REDIS = os.environ.get("AUTOGLM_TEST_REDIS", "redis://127.0.0.1:16379/0")
ROOT = Path(__file__).resolve().parents[1]
PER_HOST = int(os.environ.get("BENCH_WEBHOOKS_PER_HOST", "8"))
ROUNDS = 2
WARM_DELIVERIES = 3000
JIT_STEP_S = 3.0
JIT_QUIET_CORES = 0.1
JIT_MOST_S = 45.0


class _Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: answers each complete request `200` with no body."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.buffer = b""
        self.transport: Any = None
        self.hung = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.hung:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.receiver.arrivals.append(time.monotonic())
            if self.receiver.hang:
                self.receiver.open_requests += 1
                self.hung = True
                return
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")


class Receiver:
    """The local receiver: a minimal keep-alive HTTP/1.1 server (an asyncio Protocol on uvloop)
    on 127.0.0.1, in its own thread; a hanging one never answers."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.arrivals: list[float] = []
        self.open_requests = 0
        self.loop = uvloop.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._serve, daemon=True).start()
        self.ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server: Any = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Http(self), "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

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

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _baseline(client: str, url: str, count: int, concurrency: int) -> tuple[float, float]:
    """Signed POSTs from a bare client loop (`bench.webhook_client`) in a process of its own,
    with `concurrency` workers: requests per second, and the loop's CPU ms per request."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.webhook_client", client, url, str(count), str(concurrency)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=300,
    )
    reply = orjson.loads(answer.stdout)
    return float(reply["posts_per_s"]), float(reply["cpu_ms_per_post"])


class Platform:
    """Dispatcher processes (`slots` of them) with their own topics and keys, fed by a
    transactional producer."""

    def __init__(self, journal: bool = True, slots: int = 1) -> None:
        namespace = f"bench{uuid.uuid4().hex[:8]}."
        self.namespace = namespace
        partitions = max(2, slots)
        self.settings = Settings.model_validate(
            {
                "dev_mode": True,
                "instance_id": namespace.rstrip("."),
                "kafka": {
                    "bootstrap_servers": KAFKA,
                    "topic_prefix": namespace,
                    "partitions": partitions,
                },
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
            "AUTOGLM_KAFKA__PARTITIONS": str(partitions),
            "AUTOGLM_REDIS__URL": REDIS,
            "AUTOGLM_REDIS__KEY_PREFIX": namespace,
            "AUTOGLM_WEBHOOKS__PER_HOST_CONCURRENCY": str(PER_HOST),
            "AUTOGLM_WEBHOOKS__TIMEOUT_S": "3600",
            "AUTOGLM_WEBHOOKS__JOURNAL": "true" if journal else "false",
        }
        profile = os.environ.get("BENCH_WEBHOOKS_PROFILE")
        self.processes = []
        for slot in range(slots):
            wrap = ["-m", "cProfile", "-o", f"{profile}.{slot}.prof"] if profile else []
            command = [sys.executable, *wrap, "-m", "autoglm", "dispatcher", "--slot", f"b{slot}"]
            self.processes.append(subprocess.Popen(command, cwd=ROOT, env=env))

    @staticmethod
    def prepare(urls: list[str]) -> list[tuple[bytes, bytes]]:
        """The results (key, value) whose webhooks go to `urls`, encoded ahead of the
        measurement: building them is the load generator's work, not the platform's."""
        now = utcnow()
        records = [result(url, now) for url in urls]
        return [(r.task_id.encode(), dumps(r)) for r in records]

    def publish(self, records: list[tuple[bytes, bytes]], batch: int = 500) -> None:
        for start in range(0, len(records), batch):
            self.producer.begin_transaction()
            for key, value in records[start : start + batch]:
                self.producer.produce(self.topics.results, value, key=key)
            self.producer.commit_transaction(30)

    def rss_mb(self) -> float:
        """Resident memory of the dispatcher processes together, in MB."""
        return round(sum(rss_mb(p.pid) for p in self.processes), 1)

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{self.namespace}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


def _rate(receiver: Receiver, before: int, count: int, started: float) -> float:
    return count / (receiver.wait(before + count) - started)


def _alone(
    platform: Platform, receiver: Receiver, count: int, name: str
) -> tuple[float, dict[str, float]]:
    """Deliveries per second to a healthy receiver, after warm-up deliveries (one through
    each dispatcher's partition, as far as keys spread); and the CPU ms per delivery of the
    dispatchers, the Kafka broker, Redis and this process (receiver and producer)."""
    done = len(receiver.arrivals)
    warm = 4 * len(platform.processes)
    platform.publish(platform.prepare([receiver.url(f"/{name}-warmup{i}") for i in range(warm)]))
    receiver.wait(done + warm, timeout=60)
    done = len(receiver.arrivals)
    records = platform.prepare([receiver.url(f"/{name}{i}") for i in range(count)])
    groups = {"dispatchers": [p.pid for p in platform.processes], "bench": [os.getpid()]}
    for group, kind, address in (("broker", "kafka", KAFKA), ("redis", "redis", REDIS)):
        pid = server_pid(kind, address)
        groups[group] = [pid] if pid is not None else []
    meter = CpuMeter(groups)
    broker = groups["broker"][0] if groups["broker"] else None
    compiled = compiler_cpu_s(broker) if broker is not None else 0.0
    meter.start()
    started = time.monotonic()
    platform.publish(records)
    rate = _rate(receiver, done, count, started)
    used = meter.stop()
    if broker is not None:  # a part of the broker's CPU, not counted again in the total
        used["broker_jit"] = compiler_cpu_s(broker) - compiled
    return rate, {group: seconds * 1000 / count for group, seconds in used.items()}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _cpu(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Mean CPU ms per delivery of each group over the rounds, and their total (`broker_jit`,
    the broker's JIT compiler threads, is a part of `broker`)."""
    groups = {g: round(_mean([r[g] for r in rounds]), 3) for g in rounds[0]}
    total = sum(v for g, v in groups.items() if g != "broker_jit")
    return {**groups, "total": round(total, 3)}


def _warm(platform: Platform, receiver: Receiver) -> dict[str, Any]:
    """Deliveries through `platform`, not measured, while the fresh broker's JIT compilers still
    work, as `celery_e2e` does: a broker started for the bench runs its produce, fetch and
    transaction paths interpreted at first, and what is measured then pays for the compiling."""
    pid = server_pid("kafka", KAFKA)
    _alone(platform, receiver, WARM_DELIVERIES, "jit-")
    steps = iter(range(1_000))

    def warm(step_s: float) -> None:
        _alone(platform, receiver, int(step_s * 1_500), f"jit{next(steps)}-")

    more_s, cores = warm_until_compiled(pid, warm, JIT_STEP_S, JIT_QUIET_CORES, JIT_MOST_S)
    return {
        "deliveries_first": WARM_DELIVERIES,
        "then_steps_of_s": JIT_STEP_S,
        "steps_s": more_s,
        "compiler_cores_per_step": cores,
    }


def run(out: dict[str, Any]) -> None:
    count = int(os.environ.get("BENCH_WEBHOOKS_N", "3000"))
    slots = int(os.environ.get("BENCH_WEBHOOKS_SLOTS", "2"))
    healthy = Receiver()
    hanging = Receiver(hang=True)
    platform = Platform()
    try:
        warm_up = _warm(platform, healthy)
        baselines: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
        baseline_cpu: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
        # With and without the journal, and the bare loop, taking turns: this machine's noise
        # hits all alike.
        unjournaled = Platform(journal=False)
        rates: dict[str, list[float]] = {"without": [], "with": []}
        cpu: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
        try:
            for turn in range(ROUNDS):
                for client, measured in baselines.items():
                    rate, per_post = _baseline(client, healthy.url("/bare"), count, PER_HOST)
                    measured.append(rate)
                    baseline_cpu[client].append(per_post)
                for kind, which in (("without", unjournaled), ("with", platform)):
                    rate, used = _alone(which, healthy, count, f"{kind[0]}{turn}-")
                    rates[kind].append(rate)
                    cpu[kind].append(used)
        finally:
            unjournaled.close()
        alone = _mean(rates["with"])
        redis_only = sum(rates["without"]) / ROUNDS
        best_client, best = max(
            ((c, sum(r) / len(r)) for c, r in baselines.items()), key=lambda cr: cr[1]
        )
        rss = platform.rss_mb()

        stuck = 200
        platform.publish(platform.prepare([hanging.url(f"/h{i}") for i in range(stuck)]))
        hanging.wait(PER_HOST, timeout=30)
        done = len(healthy.arrivals)
        records = platform.prepare([healthy.url(f"/d{i}") for i in range(count)])
        started = time.monotonic()
        platform.publish(records)
        beside_hang = _rate(healthy, done, count, started)

        several = Platform(slots=slots)
        try:
            # One round unmeasured first: the processes just started (connections, caches) and
            # their consumer group may still move a partition to the one that joined second.
            _alone(several, healthy, count, "sw-")
            measured_several = [
                _alone(several, healthy, 2 * count, f"s{t}-") for t in range(ROUNDS)
            ]
            together = [rate for rate, _ in measured_several]
            several_cpu = _cpu([used for _, used in measured_several])
            several_rss = several.rss_mb()
        finally:
            several.close()
        print(
            f"webhooks: bare {best_client} {best:.0f}/s, one dispatcher {alone:.0f}/s "
            f"({alone / best:.2f}x), {slots} dispatchers {max(together):.0f}/s; CPU ms per "
            f"delivery {_cpu(cpu['with'])}",
            flush=True,
        )
        out["webhooks"] = {
            "deliveries": count,
            "per_host_concurrency": PER_HOST,
            "receiver": "in the bench process: an asyncio Protocol HTTP/1.1 keep-alive server on "
            "uvloop that answers 200 with no body",
            "baseline_client_posts_per_s": {
                c: [round(r, 1) for r in v] for c, v in baselines.items()
            },
            "baseline_client_cpu_ms_per_post": {
                c: round(_mean(v), 3) for c, v in baseline_cpu.items()
            },
            "best_baseline": best_client,
            "baseline_posts_per_s": round(best, 1),
            "dispatcher_deliveries_per_s": round(alone, 1),
            "dispatcher_vs_baseline": round(alone / best, 3),
            "dispatcher_rss_mb": rss,
            "cpu_ms_per_delivery": _cpu(cpu["with"]),
            "without_journal_cpu_ms_per_delivery": _cpu(cpu["without"]),
            "without_journal_deliveries_per_s": round(redis_only, 1),
            "rounds": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "journal_vs_without": round(alone / redis_only, 3),
            "with_hanging_receiver": {
                "hanging_deliveries_pending": stuck,
                "hanging_requests_open": hanging.open_requests,
                "healthy_deliveries_per_s": round(beside_hang, 1),
                "healthy_rate_vs_no_hang": round(beside_hang / alone, 3),
            },
            "broker_warm_up": warm_up,
            "several_dispatchers": {
                "processes": slots,
                "partitions": max(2, slots),
                "deliveries": 2 * count,
                "unmeasured_rounds_first": 1,
                "rounds_deliveries_per_s": [round(r, 1) for r in together],
                "deliveries_per_s": round(sum(together) / len(together), 1),
                "rss_mb": several_rss,
                "cpu_ms_per_delivery": several_cpu,
            },
            "targets": {
                "one_dispatcher_per_s": 1000,
                "platform_per_s": 2000,
                "dispatcher_vs_baseline": 0.8,
            },
            "processes": "the bench process (receiver thread, producer), the Kafka broker, Redis, "
            "the dispatchers measured; all on the same cores",
            "note": "end to end: Kafka commit -> dispatcher -> signed POST received, journaled "
            "(webhook-deliveries) unless said otherwise; the baseline is a bare client loop in a "
            "process of its own with the same per-host concurrency, the best of those measured; "
            "without_journal is the dispatcher with webhooks.journal=false (delivery states in "
            "Redis only); cpu_ms_per_delivery: CPU time of each process (dispatchers, broker, "
            "Redis, bench = receiver and producer) over the measured window per delivery, "
            "broker_jit the part of the broker's that its JIT compiler threads used; the "
            "broker is warmed first (broker_warm_up: deliveries until its compilers use under "
            "0.1 of a core); the results are encoded before the window",
        }
    finally:
        platform.close()
        healthy.close()
        hanging.close()


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["webhooks"]))
