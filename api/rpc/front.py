"""What every gRPC call does first: who is calling (metadata `authorization: Bearer …`), and the
submit path of the HTTP API (`api.submit.Submitter`) fed from a gRPC request."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc
from redis.exceptions import RedisError

from api.auth import Caller, Permission, authorize
from api.auth.audit import Origin
from api.inputs.bodies import submission_of
from api.rpc.errors import abort
from api.services import Services
from api.submit import Submitter
from mcp.errors import AutoGLMError, StoreError, ValidationFailed
from schemas import SubmitResponse
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.autoglm.v1 import service_pb2 as rpc

Context = grpc.aio.ServicerContext[Any, Any]
MAX_METADATA = 256
SERVICE = rpc.DESCRIPTOR.services_by_name["TaskService"].full_name
T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")


def metadata(context: Context, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            text = value.decode() if isinstance(value, bytes) else value
            if len(text) > MAX_METADATA:
                raise ValidationFailed(f"metadata {name} is longer than {MAX_METADATA} characters")
            return text
    return None


def platform_error(exc: Exception) -> AutoGLMError:
    """A Redis failure is the store's unavailability (503 over HTTP), as everywhere else."""
    if isinstance(exc, AutoGLMError):
        return exc
    return StoreError(f"the task store is unavailable: {exc}")


def unary(
    handler: Callable[[S, R, Context], Awaitable[T]],
) -> Callable[[S, R, Context], Coroutine[Any, Any, T]]:
    """A unary handler whose platform errors end the call with their gRPC status."""

    @functools.wraps(handler)
    async def guarded(self: S, request: R, context: Context) -> T:
        try:
            return await handler(self, request, context)
        except (AutoGLMError, RedisError) as exc:
            await abort(context, platform_error(exc))

    return guarded


def streaming(
    handler: Callable[[S, R, Context], AsyncIterator[T]],
) -> Callable[[S, R, Context], AsyncIterator[T]]:
    """A server-streaming handler whose platform errors end the stream with their status."""

    @functools.wraps(handler)
    async def guarded(self: S, request: R, context: Context) -> AsyncIterator[T]:
        try:
            async for item in handler(self, request, context):
                yield item
        except (AutoGLMError, RedisError) as exc:
            await abort(context, platform_error(exc))

    return guarded


def submit_response(answer: SubmitResponse) -> pb.SubmitResponse:
    """`to_protobuf(answer)` without the trip through JSON (the submit path is the hottest: that
    trip parses the timestamp back from text); tests/schemas/test_grpc_contract.py holds the two
    equal."""
    links = answer.links
    message = pb.SubmitResponse(
        task_id=answer.task_id,
        status=answer.status.value,
        links=pb.TaskLinks(self=links.self, cancel=links.cancel, stream=links.stream),
    )
    message.created_at.FromDatetime(answer.created_at)
    return message


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Front:
    """The services of the process and the caller of a call."""

    def __init__(self, services: Services, submitter: Submitter) -> None:
        self.services = services
        self.submitter = submitter

    def caller(self, context: Context, permission: Permission, method: str) -> Caller:
        scheme, _, token = (metadata(context, "authorization") or "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else None
        origin = Origin("grpc", f"/{SERVICE}/{method}", context.peer())
        return authorize(self.services.authenticator, bearer, permission, origin)

    async def submit(
        self, request: rpc.SubmitTaskRequest, caller: Caller, context: Context
    ) -> tuple[int, SubmitResponse]:
        """The HTTP submit path: 202-like (new) or 200-like (idempotent repeat) and the answer.
        Once begun, a submission runs to its end even if the call is cancelled or its deadline
        passes, so its bookkeeping (quota, idempotency key, files) stays whole."""
        if not request.HasField("task"):
            raise ValidationFailed("a submission needs its task", {"field": "task"})
        key = request.idempotency_key if request.HasField("idempotency_key") else None
        if key is not None and not 0 < len(key) <= MAX_METADATA:
            raise ValidationFailed(
                f"idempotency_key is 1 to {MAX_METADATA} characters", {"field": "idempotency_key"}
            )
        self.submitter.check_body_size(caller.project, request.task.ByteSize())
        submission = submission_of(request.task)
        work = asyncio.ensure_future(
            self.submitter.submit(
                submission.body,
                caller.project,
                key,
                metadata(context, "traceparent"),
                submission.files,
            )
        )
        work.add_done_callback(_consume)
        return await asyncio.shield(work)
