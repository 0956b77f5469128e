"""`autoglm.v1.TaskService`: Submit, Get, Cancel, Infer, StreamTask and Session
(`api/rpc/session.py`), each the HTTP route of the same name over the same services."""

from __future__ import annotations

from collections.abc import AsyncIterator

from api.auth import Permission
from api.deps import find_task
from api.operations import MAX_WAIT_S, cancel_task, wait_outcome
from api.routes.infer import DEFAULT_WAIT_S
from api.rpc.front import Context, Front, streaming, submit_response, unary
from api.rpc.session import Session
from api.rpc.watch import TaskWatch
from mcp.errors import ValidationFailed
from schemas import TaskView
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.autoglm.v1 import service_pb2 as rpc
from schemas.autoglm.v1 import service_pb2_grpc as rpc_grpc
from schemas.protobuf import to_protobuf

# Infer answers a little before the call's deadline, so the answer still reaches the caller.
DEADLINE_MARGIN_S = 0.2


def _view(view: TaskView) -> pb.TaskView:
    message = to_protobuf(view)
    assert isinstance(message, pb.TaskView)
    return message


def _task_id(value: str) -> str:
    if not value:
        raise ValidationFailed("task_id is required", {"field": "task_id"})
    return value


class TaskService(rpc_grpc.TaskServiceServicer):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.services = front.services

    @unary
    async def Submit(self, request: rpc.SubmitTaskRequest, context: Context) -> pb.SubmitResponse:
        caller = self.front.caller(context, Permission.TASKS_SUBMIT, "Submit")
        _, response = await self.front.submit(request, caller, context)
        return submit_response(response)

    @unary
    async def Get(self, request: rpc.GetTaskRequest, context: Context) -> pb.TaskView:
        caller = self.front.caller(context, Permission.TASKS_READ, "Get")
        return _view(await find_task(self.services, _task_id(request.task_id), caller))

    @unary
    async def Cancel(self, request: rpc.CancelTaskRequest, context: Context) -> pb.TaskView:
        caller = self.front.caller(context, Permission.TASKS_CANCEL, "Cancel")
        return _view(await cancel_task(self.services, _task_id(request.task_id), caller))

    @unary
    async def Infer(self, request: rpc.InferRequest, context: Context) -> rpc.InferResponse:
        caller = self.front.caller(context, Permission.TASKS_SUBMIT, "Infer")
        wait_s = request.wait_s if request.HasField("wait_s") else DEFAULT_WAIT_S
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise ValidationFailed(f"wait_s is 0 to {MAX_WAIT_S}", {"field": "wait_s"})
        _, accepted = await self.front.submit(request.submit, caller, context)
        remaining = context.time_remaining()
        if remaining is not None:
            wait_s = max(0.0, min(wait_s, remaining - DEADLINE_MARGIN_S))
        done = await wait_outcome(self.services, accepted.task_id, caller, wait_s)
        if done is not None:
            return rpc.InferResponse(task=_view(done), done=True)
        view = await find_task(self.services, accepted.task_id, caller)
        return rpc.InferResponse(task=_view(view), done=view.status.terminal)

    @streaming
    async def StreamTask(
        self, request: rpc.WatchTask, context: Context
    ) -> AsyncIterator[rpc.TaskUpdate]:
        caller = self.front.caller(context, Permission.TASKS_READ, "StreamTask")
        task_id = _task_id(request.task_id)
        await find_task(self.services, task_id, caller)
        watch = TaskWatch(self.services, caller)
        watch.follow(task_id, request.after or None)
        while len(watch):
            for update in await watch.next_updates():
                yield update

    @streaming
    async def Session(
        self, request_iterator: AsyncIterator[rpc.SessionRequest], context: Context
    ) -> AsyncIterator[rpc.TaskUpdate]:
        async for update in Session(self.front, context).run(request_iterator):
            yield update
