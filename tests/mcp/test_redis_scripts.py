"""Scripts queued in a pipeline cost no extra round trip: no `SCRIPT EXISTS` before the pipeline,
and they still run on a Redis whose script cache is empty (a restarted Redis)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from mcp.redis_client import async_script, is_cluster, script

pytestmark = pytest.mark.integration

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def _script_checks(client: redis.Redis) -> int:
    """How many `SCRIPT EXISTS` calls the server has answered."""
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))


def test_a_pipelined_script_asks_nothing_first(redis_client: redis.Redis, namespace: str) -> None:
    if is_cluster(redis_client):
        pytest.skip("a Redis Cluster runs every script with EVAL")
    key = f"{namespace}counter"
    incr = script(redis_client, INCR_BY)
    redis_client.script_flush()  # as after a restart: the script is not cached
    checks = _script_checks(redis_client)
    pipe = redis_client.pipeline(transaction=False)
    incr(keys=[key], args=[2], client=pipe)
    pipe.get(key)
    incr(keys=[key], args=[3], client=pipe)
    assert pipe.execute() == [2, b"2", 5]
    assert _script_checks(redis_client) == checks
    assert incr(keys=[key], args=[1]) == 6  # alone: EVALSHA, loading the script when missing
    redis_client.delete(key)


async def test_an_async_pipelined_script_asks_nothing_first(
    redis_client: redis.Redis, redis_url: str, namespace: str
) -> None:
    if is_cluster(redis_client):
        pytest.skip("a Redis Cluster runs every script with EVAL")
    key = f"{namespace}counter"
    client = aioredis.Redis.from_url(redis_url)
    try:
        incr = async_script(client, INCR_BY)
        await client.script_flush()
        checks = _script_checks(redis_client)
        async with client.pipeline(transaction=False) as pipe:
            await incr(keys=[key], args=[4], client=pipe)
            pipe.get(key)
            assert await pipe.execute() == [4, b"4"]
        assert _script_checks(redis_client) == checks
        assert await incr(keys=[key], args=[1]) == 5
        await client.delete(key)
    finally:
        await client.aclose()
