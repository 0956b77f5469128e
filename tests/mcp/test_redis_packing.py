"""The asyncio Redis client packs commands with hiredis: the same bytes as redis-py's own
packing, and the same answers from a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from mcp.redis_client import connect
from mcp.settings import Settings

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", 1.5),
    ("EVALSHA", b"abc", 2, "k1", "k2", 1795671925.913123, 1e-7, -3, 2**70, "snow ❄", b"\x00\xff"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "x"),
    ("HSET", "k", "f", ""),
    ("SET", "k", memoryview(b"view")),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packs_the_bytes_redis_py_packs(command: tuple[Any, ...]) -> None:
    settings = Settings.model_validate({"redis": {"url": "redis://127.0.0.1:1/0"}})
    client = connect(settings)
    fast = client.connection_pool.connection_class()
    plain = aioredis.Connection()
    assert type(fast) is not aioredis.Connection
    assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command))


def test_what_redis_py_refuses_is_refused_alike() -> None:
    settings = Settings.model_validate({"redis": {"url": "redis://127.0.0.1:1/0"}})
    fast = connect(settings).connection_pool.connection_class()
    with pytest.raises(DataError):
        fast.pack_command("SET", "k", True)


@pytest.mark.integration
def test_round_trips_through_real_redis(settings: Settings, namespace: str) -> None:
    async def run() -> list[Any]:
        client = connect(settings)
        try:
            key = f"{namespace}packing"
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"a": "❄", "b": b"\x00", "c": 2.5})
                pipe.hgetall(key)
                pipe.delete(key)
                return list(await pipe.execute())
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [3, {b"a": "❄".encode(), b"b": b"\x00", b"c": b"2.5"}, 1]
