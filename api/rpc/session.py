"""The bidirectional `Session`: the client sends submissions, watches and cancels as it goes;
the server answers each (accepted or error, with the request's `ref`) and streams every named
task's status changes, tokens and final view, interleaved, keyed by task id.

Submissions of one session run concurrently (up to `grpc.session_concurrency`), so they share
group commits. The stream ends once the client has half-closed, every submission is answered
and every named task's final view is sent; each final view is sent once per session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from api.auth import Caller, Permission
from api.deps import find_task
from api.operations import cancel_task
from api.rpc.errors import error_body
from api.rpc.front import Context, Front, platform_error, submit_response
from api.rpc.watch import TaskWatch
from mcp.errors import AutoGLMError, PermissionDenied, ValidationFailed
from schemas.autoglm.v1 import service_pb2 as rpc

Item = rpc.TaskUpdate | BaseException | None  # None: the session is over


def _refusal(ref: str, exc: Exception, task_id: str = "") -> rpc.TaskUpdate:
    return rpc.TaskUpdate(ref=ref, task_id=task_id, error=error_body(platform_error(exc)))


def _need(caller: Caller, permission: Permission) -> None:
    if not caller.can(permission):
        raise PermissionDenied(
            f"role {caller.role.value!r} lacks the permission {permission.value!r}",
            {"permission": permission.value, "role": caller.role.value},
        )


class Session:
    def __init__(self, front: Front, context: Context) -> None:
        self.front = front
        self.context = context
        self.caller = front.caller(context, Permission.TASKS_READ, "Session")
        self.watch = TaskWatch(front.services, self.caller)
        self.out: asyncio.Queue[Item] = asyncio.Queue()
        self.submitting: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(front.services.settings.grpc.session_concurrency)
        self.reading = True

    async def run(
        self, requests: AsyncIterator[rpc.SessionRequest]
    ) -> AsyncIterator[rpc.TaskUpdate]:
        reader = asyncio.create_task(self._read(requests), name="session-reader")
        watcher = asyncio.create_task(self._follow(), name="session-watcher")
        try:
            while (item := await self.out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in (reader, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _maybe_over(self) -> None:
        if not self.reading and not self.submitting and not len(self.watch):
            self.out.put_nowait(None)

    async def _read(self, requests: AsyncIterator[rpc.SessionRequest]) -> None:
        try:
            async for request in requests:
                await self._answer(request)
        except Exception as exc:  # the client's stream broke: end the session with it
            self.out.put_nowait(exc)
            return
        self.reading = False
        self._maybe_over()

    async def _answer(self, request: rpc.SessionRequest) -> None:
        kind = request.WhichOneof("request")
        try:
            if kind == "submit":
                await self.slots.acquire()  # back-pressure: the reader waits for a slot
                task = asyncio.create_task(self._submit(request.ref, request.submit))
                self.submitting.add(task)
                task.add_done_callback(self._submitted)
            elif kind == "watch":
                await find_task(self.front.services, request.watch.task_id, self.caller)
                self.watch.follow(request.watch.task_id, request.watch.after or None)
            elif kind == "cancel":
                _need(self.caller, Permission.TASKS_CANCEL)
                await cancel_task(self.front.services, request.cancel.task_id, self.caller)
            else:
                raise ValidationFailed("a session request is submit, watch or cancel")
        except (AutoGLMError, RedisError) as exc:
            task_id = request.watch.task_id or request.cancel.task_id
            self.out.put_nowait(_refusal(request.ref, exc, task_id))

    async def _submit(self, ref: str, request: rpc.SubmitTaskRequest) -> None:
        try:
            _need(self.caller, Permission.TASKS_SUBMIT)
            _, response = await self.front.submit(request, self.caller, self.context)
        except (AutoGLMError, RedisError) as exc:
            self.out.put_nowait(_refusal(ref, exc))
            return
        finally:
            self.slots.release()
        accepted = submit_response(response)
        self.out.put_nowait(rpc.TaskUpdate(ref=ref, task_id=response.task_id, accepted=accepted))
        self.watch.follow(response.task_id)

    def _submitted(self, task: asyncio.Task[None]) -> None:
        self.submitting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.out.put_nowait(task.exception())
        self._maybe_over()

    async def _follow(self) -> None:
        try:
            while True:
                for update in await self.watch.next_updates():
                    self.out.put_nowait(update)
                self._maybe_over()
        except (AutoGLMError, RedisError) as exc:
            self.out.put_nowait(platform_error(exc))
