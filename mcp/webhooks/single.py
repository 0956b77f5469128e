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
from mcp.webhooks.deliveries import Delivery, destination
from mcp.webhooks.scripts import STEPS, state_args
from schemas.webhooks import WebhookRecord

CHUNK = 200
"""States per script call: a call blocks Redis while it runs, so a large batch is cut up."""

# KEYS: the dead list, then for each state: delivery hash, schedule, the task's index.
# ARGV: the states' arguments (`scripts.STEPS`). Each state as `scripts.STATE`, then where it
# still has to be placed, its due queue and `outside`. Returns how many had anything to place.
APPLY = (
    STEPS
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
# ARGV: the outcomes' arguments (`scripts.STEPS`). Each outcome as `scripts.ENDED` (state, due
# queue, the task's turn released, claim dropped), then where the state was new, `outside`.
# Returns the places (from 0) of the outcomes that came without their body to a hash that is
# gone: nothing of those was written, they are to be sent again with the body.
ENDED = (
    STEPS
    + """
local first, again, at = 1, {}, 0
for k = 2, #KEYS, 6 do
  local hash = KEYS[k]
  local todo = state(hash, first)
  if todo == 2 then
    again[#again + 1] = at
  else
    if todo == 1 then due_queue(first) end
    release(KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], first)
    rescore(KEYS[k + 1], ARGV[first + 3], ARGV[first + 4])
    if todo == 1 then outside(KEYS[1], KEYS[k + 5], hash, first) end
  end
  first = next_state(first)
  at = at + 1
end
return again
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

    async def apply(self, records: Sequence[WebhookRecord], encoded: Sequence[bytes]) -> int:
        """Apply states (one per webhook id); returns how many had anything to place.
        `encoded`: each state's JSON without its body (`deliveries.encoded`)."""
        placed = 0
        for start in range(0, len(records), CHUNK):
            keys: list[Any] = [self.keys.webhook_dead]
            args: list[Any] = []
            chunk = zip(records[start : start + CHUNK], encoded[start : start + CHUNK], strict=True)
            for record, without_body in chunk:
                shard = self.keys.webhook_shard(record.webhook_id)
                keys += [
                    self.keys.delivery(record.webhook_id),
                    self.keys.webhook_schedule(shard),
                    self.keys.task_webhooks(record.task_id),
                ]
                host = destination(record.url)
                args += state_args(record, self.keys, host, self.retention_s, without_body)
            placed += int(await self._apply(keys=keys, args=args))
        return placed

    async def ended(
        self,
        slot: str,
        ended: Sequence[tuple[Delivery, WebhookRecord]],
        encoded: Sequence[bytes],
        body: bool = False,
    ) -> None:
        """Apply the outcomes of claimed deliveries' attempts (see `WebhookStore.ended_many`);
        `encoded`: each state's JSON without its body. The body is not sent again (the
        delivery's hash holds it) unless `body`, or Redis lost that hash meanwhile."""
        again: list[int] = []
        for start in range(0, len(ended), CHUNK):
            keys: list[Any] = [self.keys.webhook_dead]
            args: list[Any] = []
            chunk = zip(ended[start : start + CHUNK], encoded[start : start + CHUNK], strict=True)
            for (d, record), without_body in chunk:
                shard = self.keys.webhook_shard(d.webhook_id)
                keys += [
                    self.keys.delivery(d.webhook_id),
                    self.keys.webhook_schedule(shard),
                    self.keys.webhook_turn(shard, d.task_id),
                    self.keys.webhook_held(shard, d.task_id),
                    self.keys.webhook_inflight(slot, shard),
                    self.keys.task_webhooks(record.task_id),
                ]
                args += state_args(
                    record, self.keys, d.destination, self.retention_s, without_body, body
                )
            again += [start + int(at) for at in await self._ended(keys=keys, args=args)]
        if again:
            resend = [ended[at] for at in again]
            await self.ended(slot, resend, [encoded[at] for at in again], body=True)
