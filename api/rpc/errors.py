"""The platform's errors as gRPC statuses, derived from the one status table (`api.errors`).

Each status carries, in `grpc-status-details-bin`, a `google.rpc.ErrorInfo` whose reason is the
HTTP error code (`task_not_found`, `broker_unavailable`...), the `autoglm.v1.ErrorBody` the HTTP
answer would have, and a `google.rpc.RetryInfo` when the HTTP answer has a Retry-After.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from api.errors import status_of
from mcp.errors import AutoGLMError
from schemas import ErrorBody
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.protobuf import to_protobuf

DOMAIN = "autoglm-mcp"

CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    # Too large a request is a bad argument: no retry helps (the code in details says which).
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
"""The gRPC code of each HTTP status of `api.errors.STATUS`."""


def code_of(exc: AutoGLMError) -> grpc.StatusCode:
    return CODES.get(status_of(exc), grpc.StatusCode.INTERNAL)


def error_body(exc: AutoGLMError) -> pb.ErrorBody:
    message = to_protobuf(ErrorBody.of(exc.code, exc.message, exc.details))
    assert isinstance(message, pb.ErrorBody)
    return message


def _packed(message: error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(exc: AutoGLMError) -> status_pb2.Status:
    code = code_of(exc)
    details = [
        _packed(error_details_pb2.ErrorInfo(reason=exc.code, domain=DOMAIN)),
    ]
    body = any_pb2.Any()
    body.Pack(error_body(exc))
    details.append(body)
    if exc.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after_s * 1e9))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code.value[0], message=exc.message, details=details)


async def abort(context: grpc.aio.ServicerContext[object, object], exc: AutoGLMError) -> NoReturn:
    await context.abort_with_status(rpc_status.to_status(rich_status(exc)))
    raise AssertionError("abort_with_status returned")  # it raises; this satisfies NoReturn
