"""One Redis (not a cluster): many delivery states applied in one script call.

On a Redis Cluster a state is applied in steps that each touch one hash slot (`WebhookStore`:
the delivery hash, its shard's due queue, then the dead list, the task's index of webhooks and
the `placed` mark), one script per step and per state. One Redis holds every key, so here a whole
batch of states (up to `CHUNK`) is one script: the same writes, in the same order for each state,
done at once (nothing is left half placed), with one reply instead of two or three per state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from mcp.names import Keys
from mcp.redis_client import async_script
from mcp.webhooks.deliveries import Delivery, destination, hash_fields
from mcp.webhooks.scripts import RESCORE
from schemas.webhooks import WebhookRecord

CHUNK = 200
"""States per script call: a call blocks Redis while it runs, so a large batch is cut up."""

# The shared part of a state's arguments, from `first` in ARGV: version, retention (s), '1' if
# the delivery still waits, due prefix, destination, webhook id, due time, the score in the dead
# list ('' unless given up), webhook type, n, then n hash field/value items.
# `state` writes the delivery hash unless it holds that version or a later one (as
# `scripts.STATE`), and tells whether the state is still to be placed; `outside` places it
# outside its shard: dead list, the task's index, then the `placed` mark.
_STATE = (
    RESCORE
    + """
local function state(hash, first)
  local version = tonumber(ARGV[first])
  local held = tonumber(redis.call('HGET', hash, 'version') or '0')
  if held > version then return 0 end
  if held == version then
    if tonumber(redis.call('HGET', hash, 'placed') or '0') >= version then return 0 end
    return 1
  end
  local n = tonumber(ARGV[first + 9])
  redis.call('HSET', hash, unpack(ARGV, first + 10, first + 9 + n))
  if ARGV[first + 2] == '1' then
    redis.call('PERSIST', hash)
  else
    redis.call('EXPIRE', hash, tonumber(ARGV[first + 1]))
  end
  return 1
end

local function due_queue(first)
  local due = ARGV[first + 3] .. ARGV[first + 4]
  if ARGV[first + 2] == '1' then
    redis.call('ZADD', due, ARGV[first + 6], ARGV[first + 5])
  else
    redis.call('ZREM', due, ARGV[first + 5])
  end
end

local function outside(dead, index, hash, first)
  local id = ARGV[first + 5]
  if ARGV[first + 7] ~= '' then
    redis.call('ZADD', dead, ARGV[first + 7], id)
  else
    redis.call('ZREM', dead, id)
  end
  redis.call('HSET', index, ARGV[first + 8], id)
  redis.call('EXPIRE', index, tonumber(ARGV[first + 1]))
  if tonumber(redis.call('HGET', hash, 'placed') or '0') < tonumber(ARGV[first]) then
    redis.call('HSET', hash, 'placed', ARGV[first])
  end
end

local function next_state(first)
  return first + 10 + tonumber(ARGV[first + 9])
end
"""
)

# KEYS: the dead list, then for each state: delivery hash, schedule, the task's index.
# ARGV: the states' arguments (see `_STATE`). Each state as `scripts.STATE`, then where it still
# has to be placed, `scripts.PLACE` ('set' while it waits, else 'remove') and the `outside` part.
# Returns how many states had anything to place.
APPLY = (
    _STATE
    + """
local first, placed = 1, 0
for k = 2, #KEYS, 3 do
  local hash, schedule, index = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  if state(hash, first) == 1 then
    due_queue(first)
    rescore(schedule, ARGV[first + 3], ARGV[first + 4])
    outside(KEYS[1], index, hash, first)
    placed = placed + 1
  end
  first = next_state(first)
end
return placed
"""
)

# KEYS: the dead list, then for each attempt: delivery hash, schedule, turn of the task, held
# webhooks of the task, inflight set of the slot, the task's index.
# ARGV: the outcomes' arguments (see `_STATE`). Each outcome as `scripts.ENDED` (state, due
# queue, the task's turn released, claim dropped), then where the state was new, `outside`.
ENDED = (
    _STATE
    + """
local first = 1
for k = 2, #KEYS, 6 do
  local hash, schedule, turn, held = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id, prefix, host = ARGV[first + 5], ARGV[first + 3], ARGV[first + 4]
  local todo = state(hash, first)
  if todo == 1 then due_queue(first) end
  if redis.call('GET', turn) == id then
    redis.call('DEL', turn)
    local waiting = redis.call('ZRANGE', held, 0, -1, 'WITHSCORES')
    for i = 1, #waiting, 2 do
      redis.call('ZADD', prefix .. host, 'XX', waiting[i + 1], waiting[i])
    end
    redis.call('DEL', held)
  end
  rescore(schedule, prefix, host)
  redis.call('SREM', KEYS[k + 4], id)
  if todo == 1 then outside(KEYS[1], KEYS[k + 5], hash, first) end
  first = next_state(first)
end
return 1
"""
)


class OneRedis:
    """The batched writes of `WebhookStore` on one Redis."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, retention_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_s = retention_s
        self._apply = async_script(redis, APPLY)
        self._ended = async_script(redis, ENDED)

    def _args(self, record: WebhookRecord, host: str, shard: int) -> list[Any]:
        due = (record.next_attempt_at or record.at).timestamp()
        dead = record.status == "failed"
        score = repr((record.finished_at or record.at).timestamp()) if dead else ""
        fields = [item for pair in hash_fields(record).items() for item in pair]
        args: list[Any] = [record.version, self.retention_s, int(record.waiting)]
        args += [self.keys.webhook_due("", shard), host, record.webhook_id, repr(due), score]
        args += [record.type, len(fields), *fields]
        return args

    async def apply(self, records: Sequence[WebhookRecord]) -> int:
        """Apply states (one per webhook id); returns how many had anything to place."""
        placed = 0
        for start in range(0, len(records), CHUNK):
            keys: list[Any] = [self.keys.webhook_dead]
            args: list[Any] = []
            for record in records[start : start + CHUNK]:
                shard = self.keys.webhook_shard(record.webhook_id)
                keys += [
                    self.keys.delivery(record.webhook_id),
                    self.keys.webhook_schedule(shard),
                    self.keys.task_webhooks(record.task_id),
                ]
                args += self._args(record, destination(record.url), shard)
            placed += int(await self._apply(keys=keys, args=args))
        return placed

    async def ended(self, slot: str, ended: Sequence[tuple[Delivery, WebhookRecord]]) -> None:
        """Apply the outcomes of claimed deliveries' attempts (see `WebhookStore.ended_many`)."""
        for start in range(0, len(ended), CHUNK):
            keys: list[Any] = [self.keys.webhook_dead]
            args: list[Any] = []
            for d, record in ended[start : start + CHUNK]:
                shard = self.keys.webhook_shard(d.webhook_id)
                keys += [
                    self.keys.delivery(d.webhook_id),
                    self.keys.webhook_schedule(shard),
                    self.keys.webhook_turn(shard, d.task_id),
                    self.keys.webhook_held(shard, d.task_id),
                    self.keys.webhook_inflight(slot, shard),
                    self.keys.task_webhooks(record.task_id),
                ]
                args += self._args(record, d.destination, shard)
            await self._ended(keys=keys, args=args)
