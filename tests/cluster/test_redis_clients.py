"""The platform's Redis Cluster clients carry on when the node they lean on is SIGKILLed.

redis-py sends some commands to one node whatever their keys: for the keys of every EVAL in a
pipeline the blocking client asked its default node, for those of XREAD the asyncio client
asked the node it read its command table from. With that node dead such a command failed before
it was routed, the client never refreshed its view of the cluster, and a worker whose default
node was the killed primary claimed no task after the failover. Here both clients lean on the
killed primary; once its replica has taken over, the worker's claim (a pipeline of scripts) and
the stream read behind the API's SSE work again within a few attempts.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import pytest
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisError

from mcp.redis_client import command_keys
from mcp.settings import Settings
from mcp.store import SyncTaskStore, TaskStore
from schemas import AsyncTask
from tests.cluster.conftest import REDIS_CLUSTER, RedisNodes
from tests.conftest import make_settings
from tests.harness import wait_for

pytestmark = pytest.mark.cluster

ATTEMPTS = 5
"""Tries of each client after the failover, a second apart (the clients retry inside too)."""


def _settings() -> Settings:
    settings = make_settings("127.0.0.1:9", REDIS_CLUSTER, f"t{uuid.uuid4().hex[:10]}.")
    return settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"cluster": True})}
    )


def test_keys_read_from_the_command() -> None:
    assert command_keys(["EVAL", "return 1", 2, "a", "b", "x"]) == ["a", "b"]
    assert command_keys([b"EVALSHA", "f00", "0"]) == []
    assert command_keys(["XREAD", "COUNT", 5, "BLOCK", 10, b"STREAMS", "s1", "s2", "0", "$"]) == [
        "s1",
        "s2",
    ]
    assert command_keys(["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]) == ["s"]
    assert command_keys(["GET", "k"]) is None
    assert command_keys(["EVAL", "return 1"]) is None


async def test_clients_carry_on_after_the_node_they_lean_on_is_killed(
    redis_nodes: RedisNodes,
) -> None:
    settings = _settings()
    claims, reads = SyncTaskStore(settings), TaskStore(settings)
    aio = cast(AsyncRedisCluster, reads.redis)
    blocking = cast(Any, claims.redis)  # a RedisCluster (its methods are not typed)
    await aio.initialize()
    default = aio.get_default_node()  # where the asyncio client's command table came from
    victim = int(default.port)
    blocking.set_default_node(blocking.get_node(host=default.host, port=victim))
    task = AsyncTask(model="echo", action="generate")

    def claim() -> None:
        claims.claim([task], "worker-1", [f"tasks/0@{time.monotonic_ns()}"])

    async def read() -> None:
        await reads.read_stream(task.task_id, "0", block_ms=1)

    claim()
    await read()
    slot = int(redis_nodes.nodes()[victim]["slots"][0][0])
    redis_nodes.kill(victim)
    wait_for(
        lambda: redis_nodes.primary_of(slot) not in (None, victim) and redis_nodes.ok(),
        60,
        "a replica to take over",
        interval=0.2,
    )
    failures: dict[str, list[str]] = {"claim": [], "read": []}
    done: set[str] = set()
    for _ in range(ATTEMPTS):
        if "claim" not in done:
            try:
                claim()
                done.add("claim")
            except RedisError as exc:
                failures["claim"].append(str(exc))
        if "read" not in done:
            try:
                await read()
                done.add("read")
            except RedisError as exc:
                failures["read"].append(str(exc))
        if done == {"claim", "read"}:
            break
        time.sleep(1)
    claims.close()
    await reads.close()
    assert done == {"claim", "read"}, failures
