"""Redis scripts that make task state transitions atomic and monotonic.

Each script ends its step on a task with `index_task`. On a single Redis that is
`mcp.task_index.INDEX_LIB`, which moves the task in its project's indexes in the same step, so
the indexes always agree with its state. On a Redis Cluster a script may touch one hash slot
only (a task's keys share the tag `{<task id>}`, a project's indexes another): the `_DEFERRED`
variant of each script returns `{reply, index jobs}` instead, and `mcp.task_index.apply_jobs`
moves the tasks in their indexes next (see there).
"""

from mcp.task_index import DEFER_LIB, INDEX_LIB

# KEYS: task hashes. ARGV[1]: a JSON array aligned with KEYS of
# [status, rank, attempt, ttl_s, [field, value, ...], timeline field, timeline entry]. One call
# applies a batch; the timeline entry is kept once per field (a result and its terminal event
# write the same one).
# A transition applies when it moves up the lifecycle (queued < running < terminal), or is a
# newer attempt of running. A stale event only fills fields still missing: a late `running`
# never overwrites `succeeded`, yet a replayed `queued` still restores the task's description.
_APPLY_EVENTS = """
local items = cjson.decode(ARGV[1])
local applied = 0
for i, item in ipairs(items) do
  local key = KEYS[i]
  local rank = tonumber(item[2])
  local attempt = tonumber(item[3])
  local cur = redis.call('HMGET', key, 'rank', 'attempts')
  local cur_rank = tonumber(cur[1] or '-1')
  local cur_attempts = tonumber(cur[2] or '0')
  if rank > cur_rank or (rank == 1 and cur_rank == 1 and attempt > cur_attempts) then
    local fields = item[5]
    fields[#fields + 1] = 'status'
    fields[#fields + 1] = item[1]
    fields[#fields + 1] = 'rank'
    fields[#fields + 1] = rank
    redis.call('HSET', key, unpack(fields))
    applied = applied + 1
    if rank == 2 then ended(key) end
  else
    local fields = item[5]
    for j = 1, #fields, 2 do redis.call('HSETNX', key, fields[j], fields[j + 1]) end
  end
  if attempt > cur_attempts then redis.call('HSET', key, 'attempts', attempt) end
  redis.call('EXPIRE', key, tonumber(item[4]))
  index_task(key)
  if item[6] then
    local prefix, id = string.match(key, '^(.*)task:(.*)$')
    local timeline = prefix .. 'timeline:' .. id
    redis.call('HSETNX', timeline, item[6], item[7])
    redis.call('EXPIRE', timeline, tonumber(item[4]))
  end
end
publish_ended()
return finish(applied)
"""

# KEYS[1] task hash, KEYS[2] cancel flag. ARGV: now, ttl_s, worker_id, then base field pairs.
# ARGV[4]: the claim's token ('' for none), then base field pairs.
# Returns {verdict, attempt}: verdict is run | cancelled | terminal. `run` counts the attempt,
# so attempts survive a crashed worker; a claim repeated with the token of the task's latest
# claim (the same process reading the same record again after a failed round trip) counts none.
_CLAIM = """
local key = KEYS[1]
for i = 5, #ARGV, 2 do redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]) end
local cur = redis.call('HMGET', key, 'rank', 'attempts', 'claim')
local attempts = tonumber(cur[2] or '0')
if redis.call('EXISTS', KEYS[2]) == 1 then return finish({'cancelled', attempts}) end
if tonumber(cur[1] or '-1') == 2 then return finish({'terminal', attempts}) end
if ARGV[4] ~= '' and cur[3] == ARGV[4] and attempts > 0 then
  return finish({'run', attempts})
end
attempts = redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'status', 'running', 'rank', 1, 'worker_id', ARGV[3], 'claim', ARGV[4])
redis.call('HSETNX', key, 'started_at', ARGV[1])
redis.call('EXPIRE', key, tonumber(ARGV[2]))
index_task(key)
return finish({'run', attempts})
"""

# KEYS[1] task hash, KEYS[2] cancel flag. ARGV: now, flag ttl_s.
# Returns the status after the request: a queued task is cancelled at once; a running one gets
# the flag its worker polls; a finished one is left as it is.
_CANCEL = """
local key = KEYS[1]
local cur = redis.call('HMGET', key, 'rank', 'status')
if not cur[1] then
  redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[2]))
  return finish('unknown')
end
local rank = tonumber(cur[1])
if rank == 2 then return finish(cur[2]) end
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[2]))
if rank == 0 then
  redis.call('HSET', key, 'status', 'cancelled', 'rank', 2, 'finished_at', ARGV[1])
  index_task(key)
  ended(key)
  publish_ended()
  return finish('cancelled')
end
return finish('running')
"""

# A task hash's key -> the task ended. `publish_ended()`, before the script returns, sends the
# ids of the tasks it ended as one JSON array on the `ended` channel of their key prefix
# (`Keys.ended`), which wakes the requests waiting for them (`mcp.endings`): one message per
# batch, not per task, for every process subscribed. A publish is not a key access, so a script
# on a Redis Cluster may make it; the cluster passes it to every node's subscribers.
_ENDED_LIB = """
local ended_ids, ended_prefix = {}, ''
local function ended(key)
  local prefix, id = string.match(key, '^(.*)task:{(.*)}$')
  if id then
    ended_ids[#ended_ids + 1] = id
    ended_prefix = prefix
  end
end
local function publish_ended()
  if #ended_ids > 0 then
    redis.call('PUBLISH', ended_prefix .. 'ended', cjson.encode(ended_ids))
  end
end
"""

APPLY_EVENTS = INDEX_LIB + _ENDED_LIB + _APPLY_EVENTS
APPLY_EVENTS_DEFERRED = DEFER_LIB + _ENDED_LIB + _APPLY_EVENTS
CLAIM, CLAIM_DEFERRED = INDEX_LIB + _CLAIM, DEFER_LIB + _CLAIM
CANCEL, CANCEL_DEFERRED = INDEX_LIB + _ENDED_LIB + _CANCEL, DEFER_LIB + _ENDED_LIB + _CANCEL

# KEYS[1] a project's active-task sorted set. ARGV: task_id, score (submit time), limit.
# Returns 1 when the task took a place (or had one), 0 when the project is at its limit.
RESERVE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
return 1
"""
