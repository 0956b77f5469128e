"""The Redis clients of the platform: one Redis, or a Redis Cluster when `redis.cluster` is on.

On a cluster the client is redis-py's `RedisCluster` (it finds every node from the one in
`redis.url` and follows slots as they move, retrying through a failover). Callers keep the
`Redis` interface: every script and transaction of the platform touches the keys of one hash
slot (`mcp.names.Keys`), and pipelines without a transaction are split per node by the client.

Scripts run with `EVAL` on a cluster rather than `EVALSHA`: a replica promoted by a failover
may not hold the script cache, and a pipeline cannot load a script half way. On one Redis a
script queued in a pipeline runs with `EVAL` too: redis-py would otherwise ask `SCRIPT EXISTS`
before every such pipeline, a round trip more on the way of each submission, claim and result
(Redis finds the compiled script by the digest of its text either way); called on its own, a
script runs with `EVALSHA`.

The keys of `EVAL`, `EVALSHA`, `FCALL`, `XREAD` and `XREADGROUP` are read from the command here.
redis-py asks a server for them (`COMMAND GETKEYS`): the blocking cluster pipeline asks its
default node for every such command, the asyncio client the node its command table came from.
Once that node is SIGKILLed every such command fails before it is routed, so the client never
sees a node of the command's slot fail, never refreshes its view of the cluster and goes on
asking the dead node: a worker whose default node was the killed primary could claim no task
after the failover. Read here, they cost no round trip and need no particular node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript, Script
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from mcp.settings import Settings

FAILOVER_RETRIES = 12
"""Retries of a command on a cluster; the client refreshes its view of the cluster before each
(redis-py does not wait between them: the callers wait before trying again)."""


def _retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), FAILOVER_RETRIES)


_NUMKEYS_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
_STREAMS_COMMANDS = frozenset({"XREAD", "XREADGROUP"})


def _text(arg: Any) -> str:
    return arg.decode() if isinstance(arg, bytes) else str(arg)


def command_keys(args: Sequence[Any]) -> list[Any] | None:
    """The keys of a command whose keys redis-py would ask a server for; None for any other
    command (and for one too short to name its keys: the server tells what is wrong)."""
    if not args:
        return None
    command = _text(args[0]).upper()
    if command in _NUMKEYS_COMMANDS and len(args) >= 3:
        return list(args[3 : 3 + int(args[2])])
    if command in _STREAMS_COMMANDS:
        for i, arg in enumerate(args):
            if isinstance(arg, str | bytes) and _text(arg).upper() == "STREAMS":
                rest = args[i + 1 :]
                return list(rest[: len(rest) // 2])
    return None


class _ClusterPipeline(ClusterPipeline):
    def _get_command_keys(self, *args: Any) -> Any:
        keys = command_keys(args)
        return keys if keys is not None else cast(Any, super())._get_command_keys(*args)


class _Cluster(RedisCluster):
    """`RedisCluster`, and its pipelines, reading the keys of `command_keys`' commands here."""

    def _get_command_keys(self, *args: Any) -> Any:
        keys = command_keys(args)
        return keys if keys is not None else cast(Any, super())._get_command_keys(*args)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = cast(ClusterPipeline, cast(Any, super()).pipeline(transaction, shard_hint))
        pipe.__class__ = _ClusterPipeline  # the same object; only the key lookup differs
        return pipe


class _AsyncCluster(AsyncRedisCluster):
    """The asyncio `RedisCluster` reading the keys of `command_keys`' commands here (it reads
    those of EVAL itself, and pipelines route through the client)."""

    async def _determine_slot(self, command: str, *args: Any) -> int:
        keys = command_keys((command, *args))
        if not keys:
            return await super()._determine_slot(command, *args)
        slots = {self.keyslot(key) for key in keys}
        if len(slots) != 1:
            raise RedisClusterException(f"{command} - all keys must map to the same key slot")
        return slots.pop()


class _HiredisPacking(aioredis.connection.AbstractConnection):
    """Commands packed by hiredis (C), as redis-py's blocking client does; its asyncio client
    packs each argument in Python, which costs a busy client (the dispatcher sends scripts with
    dozens of arguments per delivery) about ten times as much CPU. Same bytes on the wire; what
    hiredis does not take (memoryviews, or a bool, which is refused either way) is packed the
    usual way."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


class _Connection(_HiredisPacking, aioredis.Connection):
    pass


class _SSLConnection(_HiredisPacking, aioredis.SSLConnection):
    pass


class _UnixConnection(_HiredisPacking, aioredis.UnixDomainSocketConnection):
    pass


_PACKED_IN_C: dict[type[Any], type[Any]] = {
    aioredis.Connection: _Connection,
    aioredis.SSLConnection: _SSLConnection,
    aioredis.UnixDomainSocketConnection: _UnixConnection,
}


def connect(settings: Settings, **options: Any) -> aioredis.Redis:
    """An asyncio client for `settings.redis` (a `RedisCluster` on a cluster)."""
    if settings.redis.cluster:
        client = _AsyncCluster.from_url(settings.redis.url, retry=_retry(), **options)
        return cast(aioredis.Redis, client)
    plain = aioredis.Redis.from_url(settings.redis.url, **options)
    pool = plain.connection_pool
    # The scheme chose the connection class (tcp, tls, unix); the same one, packing in C.
    pool.connection_class = _PACKED_IN_C.get(pool.connection_class, pool.connection_class)
    return plain


def connect_sync(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client for `settings.redis` (a `RedisCluster` on a cluster)."""
    if settings.redis.cluster:
        client = _Cluster.from_url(settings.redis.url, retry=_retry(), **options)
        return cast(redis.Redis, client)
    return redis.Redis.from_url(settings.redis.url, **options)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)


def _eval(text: Any, keys: Sequence[Any] | None, args: Iterable[Any] | None) -> tuple[Any, ...]:
    """The EVAL command of a script."""
    keys = list(keys or [])
    return ("EVAL", text, len(keys), *keys, *(args or []))


class _EvalScript(Script):
    def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        target = client if client is not None else self.registered_client
        return target.execute_command(*_eval(self.script, keys, args))


class _AsyncEvalScript(AsyncScript):
    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        target = client if client is not None else self.registered_client
        command = _eval(self.script, keys, args)
        if isinstance(target, AsyncClusterPipeline):
            # Queued; awaiting a cluster pipeline would start it afresh and drop its commands.
            return target.execute_command(*command)
        return await target.execute_command(*command)


class _PipelinedScript(Script):
    """EVALSHA on its own, EVAL in a pipeline (no `SCRIPT EXISTS` round trip first)."""

    def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        if isinstance(client, Pipeline):
            queue: Any = client
            return queue.execute_command(*_eval(self.script, keys, args))
        return super().__call__(keys, args, client)


class _AsyncPipelinedScript(AsyncScript):
    """EVALSHA on its own, EVAL in a pipeline (no `SCRIPT EXISTS` round trip first)."""

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        if isinstance(client, AsyncPipeline):
            return client.execute_command(*_eval(self.script, keys, args))
        return await super().__call__(keys, args, client)


def script(client: redis.Redis, text: str) -> Script:
    """A blocking client's script: EVALSHA alone, EVAL in a pipeline or on a cluster."""
    if is_cluster(client):
        return _EvalScript(client, text)
    return _PipelinedScript(client, text)


def async_script(client: aioredis.Redis, text: str) -> AsyncScript:
    """An asyncio client's script: EVALSHA alone, EVAL in a pipeline or on a cluster."""
    if is_cluster(client):
        return _AsyncEvalScript(client, text)
    return _AsyncPipelinedScript(client, text)
