"""gRPC clients for tests: a stub on a platform's `autoglm grpc`, and the details of an error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.autoglm.v1 import service_pb2 as rpc
from schemas.autoglm.v1 import service_pb2_grpc as rpc_grpc


@contextmanager
def stub(target: str) -> Iterator[rpc_grpc.TaskServiceStub]:
    with grpc.insecure_channel(target) as channel:
        yield rpc_grpc.TaskServiceStub(channel)


def task(model: str = "echo", action: str = "generate", **payload: Any) -> rpc.SubmitTaskRequest:
    request = pb.SubmitRequest(model=model, action=action)
    request.payload.update(payload)
    return rpc.SubmitTaskRequest(task=request)


def bearer(token: str) -> tuple[tuple[str, str | bytes], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Refusal:
    code: grpc.StatusCode
    reason: str  # ErrorInfo.reason: the HTTP error code
    body: dict[str, Any]  # the autoglm.v1.ErrorBody, as JSON
    retry_after_s: float | None


def refusal(error: grpc.RpcError) -> Refusal:
    """The status code and the rich details the server attached to a failed call."""
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None, f"no details: {error}"
    reason, body, retry = "", {}, None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(pb.ErrorBody.DESCRIPTOR):
            message = pb.ErrorBody()
            detail.Unpack(message)
            body = json_format.MessageToDict(message, preserving_proto_field_name=True)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            detail.Unpack(info_retry)
            retry = info_retry.retry_delay.ToNanoseconds() / 1e9
    return Refusal(error.code(), reason, body, retry)
