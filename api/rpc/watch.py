"""Following tasks as they change: their status (the task hash) and their tokens (the Redis
Stream the worker writes), every followed task in one Redis round trip per tick.

Each followed task yields status changes (a new status, or a new attempt of `running`), its
tokens in order, and then its final view exactly once, after which it is no longer followed.
A task's tokens are all in its stream before its terminal status is projected (the worker
writes them before it commits the outcome), so the final view comes after the last token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from api.auth import Caller
from api.deps import find_task
from api.rpc.errors import error_body
from api.services import Services
from mcp.errors import TaskNotFound
from schemas import StreamEntry, TaskStatus
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.autoglm.v1 import service_pb2 as rpc
from schemas.protobuf import to_protobuf

FIRST_TICK_S = 0.002
LAST_TICK_S = 0.1
READ_COUNT = 512
START = "0-0"


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Followed:
    task_id: str
    cursor: str = START  # the last stream entry delivered
    seen: tuple[str, int] | None = None  # the last (status, attempt) delivered


class TaskWatch:
    """The tasks one stream follows, for one caller (who may see them all)."""

    def __init__(self, services: Services, caller: Caller) -> None:
        self.services = services
        self.caller = caller
        self.followed: dict[str, Followed] = {}
        self.finished: set[str] = set()
        self._delay = FIRST_TICK_S
        self._woken = asyncio.Event()

    def __len__(self) -> int:
        return len(self.followed)

    def follow(self, task_id: str, after: str | None = None) -> bool:
        """Follow a task; False when it is followed already or was finished in this watch."""
        if task_id in self.followed or task_id in self.finished:
            return False
        self.followed[task_id] = Followed(task_id, after or START)
        self._delay = FIRST_TICK_S
        self._woken.set()
        return True

    async def next_updates(self) -> list[rpc.TaskUpdate]:
        """The next updates of the followed tasks, waiting for some (or for a task to follow)."""
        while True:
            updates = await self.tick() if self.followed else []
            if updates:
                self._delay = FIRST_TICK_S
                return updates
            self._woken.clear()
            try:
                await asyncio.wait_for(self._woken.wait(), self._delay if self.followed else None)
            except TimeoutError:
                pass
            self._delay = min(self._delay * 1.5, LAST_TICK_S)

    async def tick(self) -> list[rpc.TaskUpdate]:
        """One round trip: every followed task's status and new stream entries."""
        store = self.services.store
        tasks = list(self.followed.values())
        async with store.redis.pipeline(transaction=False) as pipe:
            for task in tasks:
                # One key per command: a Redis Cluster refuses a command across hash slots.
                pipe.hmget(store.keys.task(task.task_id), ["status", "attempts"])
                streams: dict[Any, Any] = {store.keys.stream(task.task_id): task.cursor}
                pipe.xread(streams, READ_COUNT)
            replies = await pipe.execute()
        updates: list[rpc.TaskUpdate] = []
        for i, task in enumerate(tasks):
            (status, attempts), stream = replies[2 * i], replies[2 * i + 1]
            read = stream[0][1] if stream else []
            updates.extend(self._entries(task, read))
            updates.extend(await self._state(task, _text(status), int(attempts or 0), read))
        return updates

    def _entries(self, task: Followed, read: list[Any]) -> list[rpc.TaskUpdate]:
        updates = []
        for raw_id, fields in read:
            task.cursor = _text(raw_id) or task.cursor
            entry = StreamEntry.of_fields(fields)
            if entry.type == "token":
                updates.append(_update(task, token=entry.delta or ""))
            elif entry.type == "status" and entry.data:
                change = (str(entry.data.get("status")), int(entry.data.get("attempt", 0)))
                updates.extend(self._change(task, *change))
        return updates

    async def _state(
        self, task: Followed, status: str | None, attempts: int, read: list[Any]
    ) -> list[rpc.TaskUpdate]:
        if status is None:  # gone (past its retention): nothing more will come
            del self.followed[task.task_id]
            missing = TaskNotFound(f"no task {task.task_id!r}", {"task_id": task.task_id})
            return [_update(task, error=error_body(missing))]
        if not TaskStatus(status).terminal:
            return self._change(task, status, attempts)
        if len(read) == READ_COUNT:  # more tokens wait: the final view comes after them
            return []
        del self.followed[task.task_id]
        self.finished.add(task.task_id)
        view = await find_task(self.services, task.task_id, self.caller)
        done = to_protobuf(view)
        assert isinstance(done, pb.TaskView)
        return [_update(task, done=done)]

    @staticmethod
    def _change(task: Followed, status: str, attempt: int) -> list[rpc.TaskUpdate]:
        if task.seen is not None and (
            task.seen == (status, attempt)
            or TaskStatus(status).rank < TaskStatus(task.seen[0]).rank
        ):
            return []
        task.seen = (status, attempt)
        return [_update(task, status=rpc.StatusChange(status=status, attempt=attempt))]


def _update(task: Followed, **kind: Any) -> rpc.TaskUpdate:
    return rpc.TaskUpdate(task_id=task.task_id, cursor=task.cursor, **kind)
