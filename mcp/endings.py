"""Wake-ups when tasks end, for the requests that wait for them (`GET /v1/tasks/{id}?wait=`,
`POST /v1/infer`, the gRPC `Submit` with a wait).

The state scripts (`mcp.lua`) publish the ids of the tasks they end on one channel
(`Keys.ended`), a JSON array per call, in the same step that makes them terminal. `Endings`
holds one subscription to it per process and wakes the waiters of those tasks, who then read
them again: a wake-up carries no state, the task hash stays the truth. A waiter registers
before it reads, so an end published after its read wakes it, and one published before is what
it read.

While the subscription is down (Redis restarting, a cluster node failing over), waiters read
again on a short timer instead; a lost message costs latency, never a wrong answer. On a Redis
Cluster the subscription is held on one node (a publish reaches every node's subscribers),
another one after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import redis.asyncio as aioredis

from mcp.names import Keys
from mcp.settings import Settings

log = logging.getLogger(__name__)

# How long one read of the subscription waits; the client's health check runs between reads.
LISTEN_S = 1.0
HEALTH_CHECK_S = 5
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 2.0


class Endings:
    """One process's subscription to the tasks that end, and the tasks its requests wait for."""

    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.channel = Keys.of(settings).ended
        self._url = settings.redis.url
        self._client = client  # the store's client: on a cluster, it knows the nodes
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = False

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="endings")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        self._wake_all()

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set when `task_id` may have ended (or the subscription was lost) while in
        the block; the caller clears it before each read of the task."""
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]

    @property
    def waiting(self) -> int:
        """Tasks waited for now."""
        return len(self._waiters)

    def _wake(self, task_id: str) -> None:
        for event in self._waiters.get(task_id, ()):
            event.set()

    def _wake_ended(self, data: Any) -> None:
        """A message of the state scripts: the JSON array of the ids of the tasks that one of
        their calls ended."""
        try:
            ids = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("task endings: not a list of task ids: %r", data[:100])
            return
        for task_id in ids if isinstance(ids, list) else ():
            self._wake(str(task_id))

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _listen(self) -> None:
        pause = RECONNECT_FIRST_S
        for attempt in itertools.count():
            connection = self._connect(self._node(attempt))
            try:
                async with connection.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    while True:
                        message = await pubsub.get_message(timeout=LISTEN_S)
                        if message is None:
                            continue
                        if message["type"] == "subscribe":
                            self.subscribed = True
                            pause = RECONNECT_FIRST_S
                            self._wake_all()  # ends published while down were missed
                        elif message["type"] == "message":
                            self._wake_ended(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("task endings: subscription lost (%s); again in %.1f s", exc, pause)
            finally:
                self.subscribed = False
                self._wake_all()
                await connection.aclose()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_S)

    def _node(self, attempt: int) -> tuple[str, int] | None:
        """The node to subscribe on at this attempt: the cluster's nodes in turn, as its client
        knows them now, else the URL's (None)."""
        known = getattr(self._client, "get_nodes", None)
        found = [(n.host, int(n.port)) for n in known()] if callable(known) else []
        return found[attempt % len(found)] if found else None

    def _connect(self, node: tuple[str, int] | None) -> aioredis.Redis:
        client = aioredis.Redis.from_url(
            self._url, health_check_interval=HEALTH_CHECK_S, socket_keepalive=True
        )
        if node is not None:
            kwargs = client.connection_pool.connection_kwargs
            kwargs["host"], kwargs["port"] = node
        return client
