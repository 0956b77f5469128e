"""Per-project indexes of tasks in Redis, kept in the same Lua step as the task's state.

Every script that changes a task's status (`mcp.lua`) ends by calling `index_task` (the Lua in
`INDEX_LIB`), so an index never disagrees with the hash it describes: the hash remembers the
status it was last indexed under (`indexed`) and the step moves the task from that set to the
current one. Sorted sets, scored by creation time (ms), per project `p`:

    idx:<p>:all                  every task
    idx:<p>:status:<status>      by status           idx:<p>:sm:<status>:<model>  both (backlog)
    idx:<p>:model:<model>        idx:<p>:action:<action>
    idx:<p>:meta:<key>=<value>   scalar top-level metadata values
    idx:<p>:done:<status>        terminal tasks, scored by finish time (rates)

and a set per project, `idxnames:<p>`: the names of its `model:`, `action:` and `meta:` indexes.

`autoglm replay` rebuilds them with the state (same scripts). Entries older than the retention
are trimmed by `IndexTrimmer`, a slice of a project's indexes at a time, found through its
`idxnames` set (no scan of the keyspace); a listing drops entries whose task hash has expired.

On a Redis Cluster a project's indexes share the hash tag `{<project>}` and a task's hash lies
in the slot of `{<task id>}`, so no script can touch both. There the state scripts return the
index job of each task whose `indexed` lags its status (`DEFER_LIB`), `apply_jobs` moves the
tasks in their indexes (`INDEX_JOBS`, one call per project; monotonic: a task only moves up the
lifecycle, so jobs applied twice or out of order end in the same place) and then notes
`indexed` on each hash (`MARK_INDEXED`). A process that dies between the steps leaves
`indexed` behind, and the next write of the task (the projector re-reads its uncommitted
events) returns the job again.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from mcp.errors import InvalidCursor
from mcp.names import Keys
from mcp.redis_client import async_script, is_cluster, script
from schemas import AsyncTask

META_MAX_PAIRS = 16
META_MAX_KEY = 64
META_MAX_VALUE = 128
LIST_BUDGET = 5_000
"""Index entries one listing call examines at most; past that it answers with a cursor."""

# A library prepended to the state scripts: `index_task(key)` brings the indexes of the task
# whose hash is `key` in line with the hash. Keys are derived from the hash's own key prefix.
# Lua shared by the index steps: `move_task` moves a task in its project's indexes (prefix
# `base`) from status `from` (nil: not indexed yet, so it also enters `all`, `model:`, `action:`
# and its `meta:` pairs, a JSON array or nil, whose names go in the set `names_key`) to
# status `to`.
MOVE_LIB = """
local COMPLETE = ''
local TERMINAL = {succeeded = true, failed = true, cancelled = true, expired = true}
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function move_task(base, names_key, id, score, from, to, model, action, meta, finished_ms)
  if not from then
    local names = {'model:' .. model, 'action:' .. action}
    redis.call('ZADD', base .. 'all', score, id)
    redis.call('ZADD', base .. names[1], score, id)
    redis.call('ZADD', base .. names[2], score, id)
    if meta then
      for _, pair in ipairs(cjson.decode(meta)) do
        names[#names + 1] = 'meta:' .. pair
        redis.call('ZADD', base .. names[#names], score, id)
      end
    end
    redis.call('SADD', names_key, unpack(names))
  else
    redis.call('ZREM', base .. 'status:' .. from, id)
    redis.call('ZREM', base .. 'sm:' .. from .. ':' .. model, id)
  end
  redis.call('ZADD', base .. 'status:' .. to, score, id)
  redis.call('ZADD', base .. 'sm:' .. to .. ':' .. model, score, id)
  if TERMINAL[to] then
    redis.call('ZADD', base .. 'done:' .. to, tonumber(finished_ms) or now_ms(), id)
  end
end
"""

# A library prepended to the state scripts: `index_task(key)` brings the indexes of the task
# whose hash is `key` in line with the hash. Keys are derived from the hash's own key prefix.
_INDEX_STEP = """
local function finish(reply) return reply end
local function index_task(key)
  local f = redis.call('HMGET', key, 'task_id', 'project', 'status', 'model', 'action',
    'created_ms', 'indexed', 'meta_index', 'finished_ms')
  local id, project, status, model, action = f[1], f[2], f[3], f[4], f[5]
  local created, indexed = f[6], f[7]
  if not (id and project and status and model and action and created) or indexed == status then
    return
  end
  local prefix = string.match(key, '^(.*)task:')
  local names_key = prefix .. 'idxnames:{' .. project .. '}'
  if not indexed and redis.call('SADD', prefix .. 'idx:projects', project) == 1 then
    redis.call('SADD', names_key, COMPLETE)
  end
  move_task(prefix .. 'idx:{' .. project .. '}:', names_key, id, tonumber(created),
    indexed or nil, status, model, action, f[8] or nil, f[9])
  redis.call('HSET', key, 'indexed', status)
end
"""
INDEX_LIB = MOVE_LIB + _INDEX_STEP

# The index step of the state scripts on a Redis Cluster: `index_task(key)` notes the task's
# index job, and `finish(reply)` returns {reply, jobs}. A job: {task key, id, project, status,
# model, action, created ms, meta pairs (JSON or ''), finished ms or ''}.
DEFER_LIB = """
local deferred = {}
local function finish(reply) return {reply, deferred} end
local function index_task(key)
  local f = redis.call('HMGET', key, 'task_id', 'project', 'status', 'model', 'action',
    'created_ms', 'indexed', 'meta_index', 'finished_ms')
  if not (f[1] and f[2] and f[3] and f[4] and f[5] and f[6]) or f[7] == f[3] then return end
  deferred[#deferred + 1] = {key, f[1], f[2], f[3], f[4], f[5], f[6], f[8] or '', f[9] or ''}
end
"""

# KEYS[1]: a project's `all` index, KEYS[2]: its names set. ARGV[1]: the prefix of its
# indexes, ARGV[2]: a JSON array
# of index jobs (`DEFER_LIB`). A task moves only up the lifecycle (queued < running < terminal),
# found by the status index it is in now.
_INDEX_JOBS = """
local RANK = {queued = 0, running = 1, succeeded = 2, failed = 2, cancelled = 2, expired = 2}
local base = ARGV[1]
for _, job in ipairs(cjson.decode(ARGV[2])) do
  local id, status = job[2], job[4]
  local current = nil
  for name, _ in pairs(RANK) do
    if redis.call('ZSCORE', base .. 'status:' .. name, id) then current = name; break end
  end
  if current ~= status and (current == nil or RANK[status] > RANK[current]) then
    local meta = nil
    if job[8] ~= '' then meta = job[8] end
    move_task(base, KEYS[2], id, tonumber(job[7]), current, status, job[5], job[6], meta,
      job[9])
  end
end
return 1
"""
INDEX_JOBS = MOVE_LIB + _INDEX_JOBS

# KEYS[1]: a task hash. ARGV[1]: the status its indexes now show. Notes it unless the task
# moved on meanwhile (then its next write returns a job again) or is gone.
MARK_INDEXED = """
if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'indexed', ARGV[1])
end
return 1
"""

# KEYS[1]: the index that drives the walk; KEYS[2..]: indexes a task must also be in.
# ARGV: max score, min score, cursor id ('' for none), limit, budget, task key prefix and
# suffix, then the task fields to return (none on a Redis Cluster, where the hashes lie in
# other slots: then each row is {id} and the caller reads the hashes). Walks newest first from
# (max, cursor id), exclusive. Returns {rows, next score, next id}: each row the task's fields
# (HMGET); next score is '' at the end.
LIST = """
local driver = KEYS[1]
local max, min, after = ARGV[1], ARGV[2], ARGV[3]
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local task_prefix, task_suffix = ARGV[6], ARGV[7]
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
local top = tonumber(max)
local found, stale = {}, {}
local examined, offset = 0, 0
local last_score, last_id = '', ''
while #found < limit and examined < budget do
  local batch = redis.call('ZREVRANGEBYSCORE', driver, max, min, 'WITHSCORES', 'LIMIT', offset, 256)
  if #batch == 0 then last_score = ''; break end
  offset = offset + #batch / 2
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if not (after ~= '' and tonumber(score) == top and id >= after) then
      examined = examined + 1
      last_score, last_id = score, id
      local keep = true
      for k = 2, #KEYS do
        if not redis.call('ZSCORE', KEYS[k], id) then keep = false; break end
      end
      if keep and #fields == 0 then
        found[#found + 1] = {id}
      elseif keep then
        local row = redis.call('HMGET', task_prefix .. id .. task_suffix, unpack(fields))
        if row[1] then found[#found + 1] = row else stale[#stale + 1] = id end
      end
      if #found >= limit or examined >= budget then break end
    end
  end
end
if #stale > 0 then redis.call('ZREM', driver, unpack(stale)) end
return {found, last_score, last_id}
"""


NAMES_COMPLETE = ""
"""A member of a project's names set (`Keys.index_names`): every `model:`, `action:` and
`meta:` index of the project is in the set. The state scripts add it with the project's first
task; a project indexed before the set existed gets it after one scan (`IndexTrimmer`)."""

# KEYS[1]: a project's names set. ARGV[1]: the prefix of its indexes, ARGV[2]: the cutoff
# (entries scored below it go; '(<ms>'), ARGV[3]: the SSCAN cursor of the set, '0' to begin,
# ARGV[4]: how many names to look at. A slice of the set's names is trimmed (a `model:` name
# with the status-and-model indexes of that model); a slice that begins also trims `all`,
# `status:` and `done:`. A name whose indexes are gone leaves the set, in the same step, so a
# task indexed meanwhile (which adds its names again) cannot be missed. Returns
# {next cursor, entries removed}.
TRIM = """
local STATUSES = {'queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'}
local base, below, cursor = ARGV[1], ARGV[2], ARGV[3]
local removed = 0
local function trim(name)
  removed = removed + redis.call('ZREMRANGEBYSCORE', base .. name, '-inf', below)
  return redis.call('EXISTS', base .. name)
end
if cursor == '0' then
  trim('all')
  for _, status in ipairs(STATUSES) do
    trim('status:' .. status)
    trim('done:' .. status)
  end
end
local reply = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', tonumber(ARGV[4]))
for _, name in ipairs(reply[2]) do
  if name ~= '' then
    local left = trim(name)
    if string.sub(name, 1, 6) == 'model:' then
      local model = string.sub(name, 7)
      for _, status in ipairs(STATUSES) do
        left = left + trim('sm:' .. status .. ':' .. model)
      end
    end
    if left == 0 then redis.call('SREM', KEYS[1], name) end
  end
end
return {reply[1], removed}
"""
TRIM_SLICE = 64
"""Names of a project's names set one trim step looks at (SSCAN's COUNT: a hint)."""


def index_fields(task: AsyncTask) -> dict[str, Any]:
    """What the index step reads from the task hash besides its description."""
    fields: dict[str, Any] = {"created_ms": epoch_ms(task.created_at)}
    pairs = metadata_pairs(task.metadata)
    if pairs:
        fields["meta_index"] = pairs
    return fields


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def metadata_pairs(metadata: Mapping[str, Any]) -> list[str]:
    """The `key=value` pairs a task is findable by: scalar top-level values, bounded."""
    pairs: list[str] = []
    for key, value in metadata.items():
        if len(pairs) >= META_MAX_PAIRS:
            break
        text = scalar_text(value)
        if text is not None and len(key) <= META_MAX_KEY and len(text) <= META_MAX_VALUE:
            pairs.append(f"{key}={text}")
    return pairs


def scalar_text(value: Any) -> str | None:
    """How a metadata value is written in a filter: strings as they are, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return orjson.dumps(value).decode()
    return None


@dataclass(frozen=True)
class Cursor:
    """Where a listing resumes: after the entry (score, task id), newest first."""

    score: str
    task_id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.score, self.task_id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            score, task_id = orjson.loads(raw)
            float(score)
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise InvalidCursor(
                "the cursor is not one this API returned", {"cursor": text}
            ) from exc
        if not isinstance(score, str) or not isinstance(task_id, str):
            raise InvalidCursor("the cursor is not one this API returned", {"cursor": text})
        return cls(score, task_id)


@dataclass(frozen=True)
class TaskFilter:
    """What `GET /v1/tasks` narrows the project's tasks to; None means any."""

    status: str | None = None
    model: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: str | None = None

    def index_names(self) -> list[str]:
        names: list[str] = []
        if self.status and self.model:
            names.append(f"sm:{self.status}:{self.model}")
        elif self.status:
            names.append(f"status:{self.status}")
        if self.model and not self.status:
            names.append(f"model:{self.model}")
        if self.action:
            names.append(f"action:{self.action}")
        if self.metadata:
            names.append(f"meta:{self.metadata}")
        return names or ["all"]


@dataclass(frozen=True)
class Page:
    rows: list[list[Any]]
    """The asked-for fields of each task, in order (the first field is never missing)."""
    next_cursor: str | None


Job = list[Any]
"""An index job returned by a `_DEFERRED` state script (see `DEFER_LIB`)."""


def _by_project(keys: Keys, jobs: list[Job]) -> dict[str, list[Job]]:
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(_text(job[2]), []).append([_text(v) for v in job])
    return grouped


def _index_args(keys: Keys, project: str, jobs: list[Job]) -> dict[str, Any]:
    return {
        "keys": [keys.index(project, "all"), keys.index_names(project)],
        "args": [keys.index(project, ""), _json(jobs)],
    }


def _new_projects(grouped: dict[str, list[Job]], added: list[Any]) -> list[str]:
    """The projects that entered `idx:projects` now (SADD answered 1): their names sets are
    complete from the start. (One whose process died before noting it gets one scan.)"""
    return [project for project, new in zip(grouped, added, strict=True) if int(new) == 1]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def apply_jobs(redis: aioredis.Redis, keys: Keys, jobs: list[Job]) -> None:
    """Move tasks in their project's indexes, then note it on their hashes (Redis Cluster)."""
    if not jobs:
        return
    grouped = _by_project(keys, jobs)
    index, mark = async_script(redis, INDEX_JOBS), async_script(redis, MARK_INDEXED)
    async with redis.pipeline(transaction=False) as pipe:
        for project in grouped:
            pipe.sadd(keys.index_projects, project)
        for project, some in grouped.items():
            await index(**_index_args(keys, project, some), client=pipe)
        added = (await pipe.execute())[: len(grouped)]
    async with redis.pipeline(transaction=False) as pipe:
        for project in _new_projects(grouped, added):
            pipe.sadd(keys.index_names(project), NAMES_COMPLETE)
        for some in grouped.values():
            for job in some:
                await mark(keys=[job[0]], args=[job[3]], client=pipe)
        await pipe.execute()


def apply_jobs_sync(redis: Any, keys: Keys, jobs: list[Job]) -> None:
    """`apply_jobs` for a blocking client."""
    if not jobs:
        return
    grouped = _by_project(keys, jobs)
    index, mark = script(redis, INDEX_JOBS), script(redis, MARK_INDEXED)
    pipe = redis.pipeline(transaction=False)
    for project in grouped:
        pipe.sadd(keys.index_projects, project)
    for project, some in grouped.items():
        index(**_index_args(keys, project, some), client=pipe)
    added = pipe.execute()[: len(grouped)]
    pipe = redis.pipeline(transaction=False)
    for project in _new_projects(grouped, added):
        pipe.sadd(keys.index_names(project), NAMES_COMPLETE)
    for some in grouped.values():
        for job in some:
            mark(keys=[job[0]], args=[job[3]], client=pipe)
    pipe.execute()


class TaskIndex:
    """Reads of the indexes for the API (the writes happen inside the state scripts)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.cluster = is_cluster(redis)
        self._list = async_script(redis, LIST)

    async def page(
        self,
        project: str,
        where: TaskFilter,
        limit: int,
        cursor: Cursor | None,
        fields: tuple[str, ...] = ("task_id",),
    ) -> Page:
        """The fields of one page of tasks, newest first, and the cursor of the next page."""
        names = [self.keys.index(project, n) for n in where.index_names()]
        if len(names) > 1:
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.zcard(name)
                sizes = await pipe.execute()
            names = [name for _, name in sorted(zip(sizes, names, strict=True))]
        top, after = "+inf" if where.until is None else str(epoch_ms(where.until)), ""
        if cursor is not None and (where.until is None or float(top) >= float(cursor.score)):
            top, after = cursor.score, cursor.task_id
        bottom = "-inf" if where.since is None else str(epoch_ms(where.since))
        args: list[Any] = [top, bottom, after, limit, LIST_BUDGET, *self.keys.task_affixes]
        if not self.cluster:
            args += fields
        rows, score, last = await self._list(keys=names, args=args)
        if self.cluster:
            rows = await self._rows(names[0], [_text(row[0]) for row in rows], fields)
        more = _text(score) != ""
        return Page(list(rows), Cursor(_text(score), _text(last)).encode() if more else None)

    async def _rows(self, driver: str, ids: list[str], fields: tuple[str, ...]) -> list[list[Any]]:
        """The fields of each task (a Redis Cluster's listing reads the hashes itself); a task
        whose hash expired leaves the index."""
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hmget(self.keys.task(task_id), list(fields))
            found = await pipe.execute()
        stale = [task_id for task_id, row in zip(ids, found, strict=True) if row[0] is None]
        if stale:
            await self.redis.zrem(driver, *stale)
        return [list(row) for row in found if row[0] is not None]

    async def count_between(self, project: str, name: str, since_ms: int, until_ms: int) -> int:
        return int(await self.redis.zcount(self.keys.index(project, name), since_ms, until_ms))

    async def trim(self, retention_s: int) -> int:
        """Drop index entries older than the retention, all projects at once (`IndexTrimmer`
        does it a slice at a time); returns how many went."""
        trimmer = IndexTrimmer(self.redis, self.keys, retention_s)
        removed = 0
        while True:
            gone, ended = await trimmer.step()
            removed += gone
            if ended:
                return removed


class IndexTrimmer:
    """Drops index entries older than the retention, a slice of one project's indexes a step
    (`TRIM`): a pass goes through the projects of `idx:projects` and, in each, the names in its
    names set (`Keys.index_names`) with `TRIM_SLICE` names a step, so no step scans the keyspace
    or holds Redis for long. A project whose set lacks `NAMES_COMPLETE` (indexed before the set
    existed) is scanned for its index names once, and the set notes it."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, retention_s: int, slice_names: int = TRIM_SLICE
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_s = retention_s
        self.slice_names = slice_names
        self._trim = async_script(redis, TRIM)
        self._projects: list[str] = []
        self._cursor = "0"

    async def step(self) -> tuple[int, bool]:
        """Trim the next slice; returns the entries removed and whether a pass ended with it."""
        if not self._projects:
            members = await self.redis.smembers(self.keys.index_projects)
            self._projects = sorted(_text(p) for p in members)
            self._cursor = "0"
            if not self._projects:
                return 0, True
        project = self._projects[0]
        names = self.keys.index_names(project)
        if self._cursor == "0" and not await self.redis.sismember(names, NAMES_COMPLETE):
            await self._complete(project)
        cutoff = (time.time() - self.retention_s) * 1000
        base = self.keys.index(project, "")
        cursor, removed = await self._trim(
            keys=[names], args=[base, f"({cutoff}", self._cursor, self.slice_names]
        )
        self._cursor = _text(cursor)
        if self._cursor == "0":
            self._projects.pop(0)
        return int(removed), not self._projects

    async def _complete(self, project: str) -> None:
        """Note the project's `model:`, `action:` and `meta:` indexes in its names set (one
        scan of the keyspace, once per project)."""
        names = self.keys.index_names(project)
        base = self.keys.index(project, "")
        found: list[str] = []
        async for key in self.redis.scan_iter(match=self.keys.index(project, "*"), count=1000):
            name = _text(key)[len(base) :]
            if name.startswith(("model:", "action:", "meta:")):
                found.append(name)
            if len(found) >= 1000:
                await self.redis.sadd(names, *found)
                found.clear()
        await self.redis.sadd(names, *found, NAMES_COMPLETE)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def newest_first(
    redis: aioredis.Redis, key: str, limit: int, cursor: Cursor | None
) -> tuple[list[str], str | None]:
    """Members of a sorted set, highest score first, after `cursor` (exclusive); and the cursor
    of the next page, None at the end. Members of one score come in reverse id order."""
    top = "+inf" if cursor is None else cursor.score
    found: list[str] = []
    last_score = 0.0
    offset = 0
    while len(found) <= limit:
        batch = cast(
            list[tuple[Any, float]],
            await redis.zrevrangebyscore(key, top, "-inf", start=offset, num=256, withscores=True),
        )
        if not batch:
            return found, None
        offset += len(batch)
        for member, score in batch:
            item = _text(member)
            if cursor and float(score) == float(cursor.score) and item >= cursor.task_id:
                continue
            if len(found) == limit:
                return found, Cursor(repr(last_score), found[-1]).encode()
            found.append(item)
            last_score = float(score)
    return found, None
