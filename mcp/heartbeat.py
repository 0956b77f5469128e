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
from typing import Any, cast

import orjson
import redis
import redis.asyncio as aioredis

from mcp.names import Keys
from mcp.redis_client import connect_sync, is_cluster
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
        self.redis = client or connect_sync(settings)
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
        pipe.zrem(self.keys.workers_failed, self.worker_id)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except redis.RedisError:
                pass  # Redis is down: the key ages, and readers see a suspect worker.

    def stop(self, forget: bool = True) -> None:
        """Stop beating; `forget` deletes the key (not when a newer instance took it over)."""
        self._stop.set()
        self._thread.join(self.interval + 1)
        if not forget:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.worker(self.worker_id))
        pipe.srem(self.keys.workers, self.worker_id)
        pipe.execute()


FAILED_SHOWN_S = 600
"""How long a worker whose heartbeat expired is still listed, as `failed`."""


async def list_workers(settings: Settings, client: aioredis.Redis) -> list[dict[str, Any]]:
    """Every registered worker with its state: alive, suspect (a beat is late), or failed (its
    key expired without a clean stop; listed for `FAILED_SHOWN_S`)."""
    keys = Keys.of(settings)
    ids = sorted(
        m.decode() if isinstance(m, bytes) else str(m) for m in await client.smembers(keys.workers)
    )
    values = await _values(client, [keys.worker(w) for w in ids]) if ids else []
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
    async with client.pipeline(transaction=True) as pipe:
        if gone:
            pipe.zadd(keys.workers_failed, dict.fromkeys(gone, now), nx=True)
            pipe.srem(keys.workers, *gone)
        pipe.zremrangebyscore(keys.workers_failed, "-inf", now - FAILED_SHOWN_S)
        pipe.zrange(keys.workers_failed, 0, -1, withscores=True)
        failed = (await pipe.execute())[-1]
    for member, at in failed:
        worker_id = member.decode() if isinstance(member, bytes) else str(member)
        out.append({"worker_id": worker_id, "state": "failed", "failed_at": at})
    return out


async def _values(client: aioredis.Redis, names: list[str]) -> list[Any]:
    if is_cluster(client):  # the keys lie in different slots
        return list(await cast(Any, client).mget_nonatomic(names))
    return list(await client.mget(names))
