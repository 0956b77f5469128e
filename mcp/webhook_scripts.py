"""Redis scripts of the webhook schedule.

Deliveries wait in one ZSET per destination (`webhook:due:<host:port>`, scored by due time);
`webhook:schedule` scores each destination by its earliest entry. A claim walks destinations in
due order and takes from each only as many deliveries as that destination has free slots, so a
saturated (hanging) destination is skipped as a whole and its backlog is never touched.
"""

# Keep a destination's score equal to its earliest delivery, or drop it when it has none.
_RESCORE = """
local function rescore(schedule, due_prefix, host)
  local first = redis.call('ZRANGE', due_prefix .. host, 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', schedule, first[2], host)
  else
    redis.call('ZREM', schedule, host)
  end
end
"""

# KEYS: delivery hash, schedule, task index.
# ARGV: id, due, type, index ttl, due prefix, host, then field/value pairs.
# A delivery is created once: a result consumed again after a crash changes nothing.
SCHEDULE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', ARGV[5] .. ARGV[6], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], 'LT', ARGV[2], ARGV[6])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return 1
"""

# KEYS: schedule, inflight set of the slot.
# ARGV: now, lease end, limit, due prefix, free slots of an idle destination, destinations to
# scan, then destination/free-slots pairs for destinations with attempts in flight.
# Returns {next due time or '', claimed ids...}.
CLAIM = (
    _RESCORE
    + """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local default_free = tonumber(ARGV[5])
local free = {}
for i = 7, #ARGV, 2 do free[ARGV[i]] = tonumber(ARGV[i + 1]) end
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
    local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0,
      math.min(slots, limit - taken))
    for _, id in ipairs(ids) do
      redis.call('ZADD', due, ARGV[2], id)
      redis.call('SADD', KEYS[2], id)
      out[#out + 1] = id
    end
    taken = taken + #ids
    left[host] = slots - #ids
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

# KEYS: schedule. ARGV: due prefix, host, id, at, mode.
# mode: 'set' (due at `at`), 'earlier' (only bring forward), 'remove', 'if-scheduled'.
PLACE = (
    _RESCORE
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

# KEYS: delivery hash, schedule, dead. ARGV: now, id, due prefix.
# A finished delivery starts its schedule again; one still retrying is brought forward.
REDELIVER = (
    _RESCORE
    + """
local row = redis.call('HMGET', KEYS[1], 'status', 'host')
local status, host = row[1], row[2]
if not status or not host then return 0 end
local due = ARGV[3] .. host
if status == 'delivered' or status == 'failed' then
  redis.call('HSET', KEYS[1], 'status', 'pending', 'step', 0, 'next_attempt_at', ARGV[1])
  redis.call('PERSIST', KEYS[1])
  redis.call('ZADD', due, ARGV[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[1])
  redis.call('ZADD', due, 'LT', ARGV[1], ARGV[2])
end
rescore(KEYS[2], ARGV[3], host)
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""
)
