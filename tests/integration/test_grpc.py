"""The gRPC front door keeps the HTTP promises: durable acks, idempotency, credentials and
project isolation, errors as status codes with the HTTP error codes, Kafka outage answered
UNAVAILABLE with nothing recorded; reflection and health served."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from schemas.autoglm.v1 import service_pb2 as rpc
from tests.grpc_calls import bearer, refusal, stub, task
from tests.harness import Platform, free_port
from tests.integration.test_bad_input import assert_nothing_recorded

pytestmark = pytest.mark.integration


def test_submit_get_infer_cancel_and_errors(platform: Platform) -> None:
    platform.grpc()
    platform.worker("echo")
    with stub(platform.grpc_target) as tasks:
        first = task(n=1)
        first.idempotency_key = "grpc-once"
        accepted = tasks.Submit(first, timeout=30)
        assert accepted.status == "queued" and accepted.links.self.endswith(accepted.task_id)
        assert tasks.Submit(first, timeout=30).task_id == accepted.task_id

        answer = tasks.Infer(rpc.InferRequest(submit=task(n=2), wait_s=30), timeout=60)
        assert answer.done and answer.task.status == "succeeded"
        assert json_format.MessageToDict(answer.task.result)["echo"] == {"n": 2}
        view = tasks.Get(rpc.GetTaskRequest(task_id=answer.task.task_id), timeout=10)
        assert view.status == "succeeded" and view.task_id == answer.task.task_id

        # A model nobody serves keeps its task queued: it can be cancelled.
        queued = tasks.Submit(task("glm-tiny", prompt="hi", max_tokens=2), timeout=30)
        cancelled = tasks.Cancel(rpc.CancelTaskRequest(task_id=queued.task_id), timeout=30)
        assert cancelled.status == "cancelled"

        # The deadline bounds Infer's wait: the answer comes before it, not yet done.
        slow = rpc.InferRequest(submit=task(n=3, sleep_ms=3000), wait_s=60)
        pending = tasks.Infer(slow, timeout=1.5)
        assert not pending.done and pending.task.status in {"queued", "running"}

        with pytest.raises(grpc.RpcError) as missing:
            tasks.Get(rpc.GetTaskRequest(task_id="nope"), timeout=10)
        error = refusal(missing.value)
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "task_not_found")
        assert error.body["error"]["code"] == "task_not_found"

        with pytest.raises(grpc.RpcError) as invalid:
            tasks.Submit(task("no-such-model"), timeout=10)
        assert refusal(invalid.value).code == grpc.StatusCode.INVALID_ARGUMENT

        conflict = task(n=99)
        conflict.idempotency_key = "grpc-once"
        with pytest.raises(grpc.RpcError) as reused:
            tasks.Submit(conflict, timeout=10)
        error = refusal(reused.value)
        assert (error.code, error.reason) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "idempotency_conflict",
        )

        # A Session answers refusals in-band and goes on; a watched task's final view comes once.
        requests = [
            rpc.SessionRequest(ref="w", watch=rpc.WatchTask(task_id=answer.task.task_id)),
            rpc.SessionRequest(ref="w2", watch=rpc.WatchTask(task_id=answer.task.task_id)),
            rpc.SessionRequest(ref="c", cancel=rpc.CancelTaskRequest(task_id="nope")),
            rpc.SessionRequest(ref="bad", submit=task("no-such-model")),
        ]
        updates = list(tasks.Session(iter(requests), timeout=30))
        refused = {u.ref: u.error.error.code for u in updates if u.HasField("error")}
        assert refused == {"c": "task_not_found", "bad": "unknown_model"}
        finals = [u.task_id for u in updates if u.HasField("done")]
        assert finals == [answer.task.task_id]

    with grpc.insecure_channel(platform.grpc_target) as channel:
        reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # untyped stubs
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (listing,) = list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in listing.list_services_response.service}
    assert {"autoglm.v1.TaskService", "grpc.health.v1.Health"} <= names


def test_credentials_isolation_and_quota(platform: Platform) -> None:
    platform.grpc(
        AUTOGLM_AUTH__ENABLED="true",
        AUTOGLM_AUTH__API_KEYS='{"key-a": "alpha", "key-b": "beta"}',
        AUTOGLM_QUOTAS__PROJECTS='{"beta": {"max_active": 1}}',
    )
    with stub(platform.grpc_target) as tasks:
        with pytest.raises(grpc.RpcError) as anonymous:
            tasks.Submit(task(), timeout=10)
        assert refusal(anonymous.value).code == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as wrong:
            tasks.Submit(task(), metadata=bearer("wrong"), timeout=10)
        assert refusal(wrong.value).reason == "unauthorized"

        mine = tasks.Submit(task(), metadata=bearer("key-a"), timeout=30)
        found = tasks.Get(rpc.GetTaskRequest(task_id=mine.task_id), metadata=bearer("key-a"))
        assert found.task_id == mine.task_id
        with pytest.raises(grpc.RpcError) as theirs:
            tasks.Get(rpc.GetTaskRequest(task_id=mine.task_id), metadata=bearer("key-b"))
        assert refusal(theirs.value).code == grpc.StatusCode.NOT_FOUND

        # No worker runs: beta's first task stays active, the second is over its quota.
        tasks.Submit(task(), metadata=bearer("key-b"), timeout=30)
        with pytest.raises(grpc.RpcError) as over:
            tasks.Submit(task(), metadata=bearer("key-b"), timeout=30)
        error = refusal(over.value)
        assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota_exceeded")
        assert error.retry_after_s is not None and error.retry_after_s > 0


def test_broker_outage_is_unavailable_and_records_nothing(platform: Platform) -> None:
    platform.grpc(
        serving=False,
        AUTOGLM_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        AUTOGLM_KAFKA__REQUEST_TIMEOUT_S="3",
    )
    with grpc.insecure_channel(platform.grpc_target) as channel:
        stub_of_health: Any = health_pb2_grpc.HealthStub(channel)  # its stub types lack Check
        health = stub_of_health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with stub(platform.grpc_target) as tasks:
        attempt = task(n=1)
        attempt.idempotency_key = "k-unavailable"
        with pytest.raises(grpc.RpcError) as down:
            tasks.Submit(attempt, timeout=30)
    error = refusal(down.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "broker_unavailable")
    assert error.retry_after_s is not None
    assert_nothing_recorded(platform)
