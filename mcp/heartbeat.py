"""Worker heartbeats: a TTL key per worker, refreshed a little faster than it expires.

A worker is `alive` while its key is fresh, `suspect` once a beat is late, and gone (`failed`)
when the key expired; the registry set remembers it until then.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from mcp.names import Keys
from mcp.settings import Settings


class Heartbeat:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        info: Callable[[], dict[str, Any]],
        client: redis.Redis | None = None,
    ) -> None:
        self.keys = Keys.of(settings)
        self.worker_id = worker_id
        self.interval = settings.worker.heartbeat_interval_s
        self.info = info
        self.redis = client or redis.Redis.from_url(settings.redis.url)
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        body = {
            "worker_id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "beat_at": time.time(),
            "interval_s": self.interval,
            **self.info(),
        }
        ttl_ms = int(self.interval * 3 * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.worker(self.worker_id), orjson.dumps(body), px=ttl_ms)
        pipe.sadd(self.keys.workers, self.worker_id)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except redis.RedisError:
                pass  # Redis is down: the key ages, and readers see a suspect worker.

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 1)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.worker(self.worker_id))
        pipe.srem(self.keys.workers, self.worker_id)
        pipe.execute()


async def list_workers(settings: Settings, client: aioredis.Redis) -> list[dict[str, Any]]:
    keys = Keys.of(settings)
    ids = sorted(
        m.decode() if isinstance(m, bytes) else str(m) for m in await client.smembers(keys.workers)
    )
    if not ids:
        return []
    values = await client.mget([keys.worker(w) for w in ids])
    now = time.time()
    out: list[dict[str, Any]] = []
    gone: list[str] = []
    for worker_id, raw in zip(ids, values, strict=True):
        if raw is None:
            gone.append(worker_id)
            continue
        body: dict[str, Any] = orjson.loads(raw)
        age = now - float(body.get("beat_at", 0))
        body["age_s"] = round(age, 3)
        body["state"] = "alive" if age <= float(body.get("interval_s", 2)) * 1.5 else "suspect"
        out.append(body)
    if gone:
        await client.srem(keys.workers, *gone)
    return out
