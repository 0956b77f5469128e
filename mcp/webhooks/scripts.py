"""Redis scripts of the webhook schedule.

Deliveries wait in one ZSET per destination (`webhook:due:<host:port>`, scored by due time);
`webhook:schedule` scores each destination by its earliest entry. A claim walks destinations in
due order and takes from each only as many deliveries as that destination has free slots, so a
saturated (hanging) destination is skipped as a whole and its backlog is never touched.

A task's webhooks take turns: while one is claimed (`webhook:turn:<task>` names it, for as long
as its lease), later ones of the same task are held out of the due set (`webhook:held:<task>`
keeps their places) and put back when it is delivered, retried later or given up. So a task's
webhooks are attempted one at a time, in the order they were scheduled; a webhook waiting for a
retry no longer holds the next ones back.
"""

from __future__ import annotations

from typing import Any

from mcp.names import Keys
from mcp.webhooks.deliveries import hash_fields
from schemas.webhooks import WebhookRecord

# Keep a destination's score equal to its earliest delivery, or drop it when it has none.
RESCORE = """
local function rescore(schedule, due_prefix, host)
  local first = redis.call('ZRANGE', due_prefix .. host, 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', schedule, first[2], host)
  else
    redis.call('ZREM', schedule, host)
  end
end
"""

# The steps of one delivery state, shared by the scripts of a Redis Cluster (one hash slot per
# call) and the batch scripts of one Redis (`mcp.webhooks.single`). A state's arguments start at
# `first` in ARGV (`state_args`): version, retention (s), '1' if the delivery still waits, due
# prefix, destination, webhook id, due time, the score in the dead list ('' unless given up),
# webhook type, n, then n hash field/value items.
# `state` writes the delivery hash unless it holds that version or a later one, so records may
# come twice and in any order (from the process that wrote them and from the projection of the
# topic), and tells whether the state is still to be placed (1) or there is nothing to do (0).
# An attempt's outcome comes without the body (the hash field list then ends with `record`, not
# `body`): the hash holds it since the delivery was claimed. Where the hash is gone (Redis lost
# it meanwhile) `state` writes nothing and answers 2: the state is to be sent again with its body.
# `due_queue` places it in its destination's due queue; `release` gives the task's next webhooks
# their turn after an attempt; `outside` places it outside its shard (dead list, the task's
# index), then notes it `placed`.
STEPS = (
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
  if held == 0 and ARGV[first + 8 + n] ~= 'body' then return 2 end
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

local function release(turn, held, inflight, first)
  local id, due = ARGV[first + 5], ARGV[first + 3] .. ARGV[first + 4]
  if redis.call('GET', turn) == id then
    redis.call('DEL', turn)
    local waiting = redis.call('ZRANGE', held, 0, -1, 'WITHSCORES')
    for i = 1, #waiting, 2 do redis.call('ZADD', due, 'XX', waiting[i + 1], waiting[i]) end
    redis.call('DEL', held)
  end
  redis.call('SREM', inflight, id)
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


def state_args(
    record: WebhookRecord,
    keys: Keys,
    host: str,
    retention_s: int,
    without_body: bytes,
    body: bool = True,
) -> list[Any]:
    """A state's arguments (see `STEPS`), `host` being its destination; `without_body`: the
    record's `encoded` JSON; `body` False: without the body (an attempt's outcome)."""
    shard = keys.webhook_shard(record.webhook_id)
    due = (record.next_attempt_at or record.at).timestamp()
    dead = record.status == "failed"
    score = repr((record.finished_at or record.at).timestamp()) if dead else ""
    fields = [item for pair in hash_fields(record, without_body, body).items() for item in pair]
    args: list[Any] = [record.version, retention_s, int(record.waiting)]
    args += [keys.webhook_due("", shard), host, record.webhook_id, repr(due), score]
    args += [record.type, len(fields), *fields]
    return args


# KEYS: a delivery hash. ARGV: a state's arguments. One key only (Redis Cluster): the placing is
# a second step (`PLACE`, then the dead list and the task's index and `PLACED`), redone until
# `placed` says it is done. Returns 1 when the state still has to be placed, else 0.
STATE = STEPS + "return state(KEYS[1], 1)\n"

# KEYS: delivery hashes of one shard (one hash slot). The version placed of each (0: none).
VERSIONS = """
local out = {}
for i = 1, #KEYS do out[i] = tonumber(redis.call('HGET', KEYS[i], 'placed') or '0') end
return out
"""

# KEYS: a delivery hash. ARGV: version. Its state up to `version` is placed (never goes back).
PLACED = """
if tonumber(redis.call('HGET', KEYS[1], 'placed') or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'placed', ARGV[1])
end
return 1
"""

# KEYS: schedule, inflight set of the slot.
# ARGV: now, lease end, limit, due prefix, free slots of an idle destination, destinations to
# scan, delivery prefix, turn prefix, held prefix, lease in ms, then destination/free-slots pairs
# for destinations with attempts in flight.
# Returns {next due time or '', then for each claimed delivery: id, record, body, traceparent}
# (the fields of its hash, '' where missing), so a claim needs no second round trip.
CLAIM = (
    RESCORE
    + """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local default_free = tonumber(ARGV[5])
local delivery_prefix, turn_prefix, held_prefix = ARGV[7], ARGV[8], ARGV[9]
local lease_ms = tonumber(ARGV[10])
local free = {}
for i = 11, #ARGV, 2 do free[ARGV[i]] = tonumber(ARGV[i + 1]) end
local scan = tonumber(ARGV[6])
local hosts = redis.call('ZRANGE', KEYS[1], 0, scan - 1, 'WITHSCORES')
local out = {''}
local taken = 0
local left = {}
for i = 1, #hosts, 2 do
  local host = hosts[i]
  if tonumber(hosts[i + 1]) > now or taken >= limit then break end
  local slots = free[host] or default_free
  if slots > 0 then
    local due = ARGV[4] .. host
    local want = math.min(slots, limit - taken)
    local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'WITHSCORES', 'LIMIT', 0,
      want * 4 + 4)
    local got = 0
    for j = 1, #ids, 2 do
      if got >= want then break end
      local id = ids[j]
      local task = redis.call('HGET', delivery_prefix .. id, 'task_id')
      local turn = task and redis.call('GET', turn_prefix .. task)
      if turn and turn ~= id then
        -- An earlier webhook of this task is being attempted: keep this one's place.
        redis.call('ZADD', held_prefix .. task, ids[j + 1], id)
        redis.call('PEXPIRE', held_prefix .. task, lease_ms * 2)
        redis.call('ZADD', due, ARGV[2], id)
      else
        if task then redis.call('SET', turn_prefix .. task, id, 'PX', lease_ms) end
        redis.call('ZADD', due, ARGV[2], id)
        redis.call('SADD', KEYS[2], id)
        local row = redis.call('HMGET', delivery_prefix .. id, 'record', 'body', 'traceparent')
        out[#out + 1] = id
        out[#out + 1] = row[1] or ''
        out[#out + 1] = row[2] or ''
        out[#out + 1] = row[3] or ''
        got = got + 1
      end
    end
    taken = taken + got
    left[host] = slots - got
    rescore(KEYS[1], ARGV[4], host)
  end
end
-- The next due time that matters: the earliest destination that still has a free slot.
hosts = redis.call('ZRANGE', KEYS[1], 0, scan - 1, 'WITHSCORES')
for i = 1, #hosts, 2 do
  local slots = left[hosts[i]] or free[hosts[i]] or default_free
  if slots > 0 then
    out[1] = hosts[i + 1]
    break
  end
end
return out
"""
)

# KEYS: a delivery hash, schedule, turn of the task, held webhooks of the task, inflight set of
# the slot. ARGV: a state's arguments. The outcome of an attempt of a claimed delivery, in one
# call: its state, its place in the due queue, the task's turn released and the claim dropped.
# Every key is in the delivery's shard (one hash slot). Returns 1 when what lies outside the shard
# (dead list, task index, then `PLACED`) is still to write, 0 when Redis holds that version or a
# later one, 2 when the state came without its body and the hash is gone (nothing written: send
# it again with the body).
ENDED = (
    STEPS
    + """
local todo = state(KEYS[1], 1)
if todo == 2 then return 2 end
if todo == 1 then due_queue(1) end
release(KEYS[3], KEYS[4], KEYS[5], 1)
rescore(KEYS[2], ARGV[4], ARGV[5])
return todo
"""
)

# KEYS: schedule. ARGV: due prefix, host, id, at, mode.
# mode: 'set' (due at `at`), 'earlier' (only bring forward), 'remove', 'if-scheduled'.
PLACE = (
    RESCORE
    + """
local due = ARGV[1] .. ARGV[2]
local mode = ARGV[5]
if mode == 'remove' then
  redis.call('ZREM', due, ARGV[3])
elseif mode == 'if-scheduled' then
  redis.call('ZADD', due, 'XX', ARGV[4], ARGV[3])
elseif mode == 'earlier' then
  redis.call('ZADD', due, 'LT', ARGV[4], ARGV[3])
else
  redis.call('ZADD', due, ARGV[4], ARGV[3])
end
rescore(KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS: positions hash. ARGV: whether the hash must exist, then partition/next-offset pairs.
# Positions only move forward, so dispatcher slots projecting the same topic never take one back.
# A hash that must exist and does not means Redis lost the webhook state: returns 0, writes none.
POSITIONS = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""
