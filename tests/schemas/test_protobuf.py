"""JSON and Protobuf carry the same messages: every message type decodes identically from both."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from schemas import (
    AsyncTask,
    DecodeError,
    ErrorBody,
    SubmitRequest,
    SubmitResponse,
    TaskError,
    TaskEvent,
    TaskLinks,
    TaskResult,
    TaskStatus,
    TaskView,
    TraceContext,
    WebhookView,
)
from schemas.codec import JSON, PROTOBUF, decode, encode
from schemas.errors import ErrorDetail
from schemas.files import FileView, new_file_id
from schemas.protobuf import PROTOBUF_TYPES, protobuf_type, to_protobuf
from schemas.task import Idempotency
from schemas.webhooks import WebhookAttempt

ROOT = Path(__file__).resolve().parents[2]
PROTO = "schemas/autoglm/v1/messages.proto"
NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)
FREE = {"prompt": "Hi", "max_tokens": 16, "temperature": 0.7, "stop": ["\n"], "seed": None}
NESTED = {"list": [1, 2.5, "x", None, True, {"deep": {"n": -3}}], "empty": {}, "flag": False}

TASK = AsyncTask(
    model="glm-tiny",
    action="generate",
    payload={**FREE, **NESTED},
    callback_url="https://example.org/hook",
    webhook_events_filter=("completed", "started", "output"),
    created_at=NOW,
    timeout_s=12.5,
    ttl_s=3600,
    attempt=2,
    project="acme",
    metadata={"user": "u1", "n": 7},
    trace=TraceContext(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", tracestate="k=v"),
    payload_file=new_file_id(),
    idempotency=Idempotency(key="k-1", fingerprint="f" * 64, expires_at=LATER),
)
ERROR = TaskError(code="timeout", message="too slow", details={"limit_s": 5, "hints": ["x"]})
SAMPLES: list[BaseModel] = [
    TASK.trace,
    TASK.idempotency,
    ERROR,
    TASK,
    AsyncTask(model="echo", action="embed", created_at=NOW),
    TaskEvent(
        task_id=TASK.task_id,
        status=TaskStatus.QUEUED,
        at=NOW,
        attempt=1,
        model="glm-tiny",
        action="generate",
        project="acme",
        worker_id="glm-tiny.0",
        task=TASK,
        result={"text": "ok", "tokens": 3},
        error=ERROR,
        cancel_requested=True,
    ),
    TaskEvent(task_id=TASK.task_id, status=TaskStatus.RUNNING, at=NOW),
    TaskResult(
        task_id=TASK.task_id,
        status=TaskStatus.SUCCEEDED,
        model="glm-tiny",
        action="generate",
        project="acme",
        attempts=1,
        created_at=NOW,
        started_at=NOW,
        finished_at=LATER,
        result={"text": "ok", "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
        callback_url="https://example.org/hook",
        webhook_events_filter=("completed",),
        metadata={"user": "u1"},
        worker_id="glm-tiny.0",
    ),
    TaskResult(
        task_id="t",
        status=TaskStatus.FAILED,
        model="echo",
        action="generate",
        created_at=NOW,
        finished_at=LATER,
        error=TaskError(code="backend_error", message="boom"),
    ),
    SubmitRequest(
        model="glm-tiny",
        action="phone_step",
        payload={"instruction": "Open settings", "screenshot": {"file_id": new_file_id()}},
        callback_url="https://example.org/hook",
        webhook_events_filter=("completed", "started"),
        timeout_s=30,
        ttl_s=60.5,
        metadata={"run": 1},
    ),
    TaskLinks.for_task("t1"),
    SubmitResponse(
        task_id="t1", status=TaskStatus.QUEUED, created_at=NOW, links=TaskLinks.for_task("t1")
    ),
    WebhookView(
        status="retrying",
        attempts=2,
        last_status_code=503,
        next_attempt_at=LATER,
        history=(
            WebhookAttempt(attempt=1, at=NOW, duration_ms=12.5, error="refused"),
            WebhookAttempt(
                attempt=2, at=NOW, duration_ms=3.0, status_code=503, next_attempt_at=LATER
            ),
        ),
    ),
    WebhookAttempt(attempt=1, at=NOW, duration_ms=0.0, status_code=200),
    TaskView(
        task_id="t1",
        model="glm-tiny",
        action="phone_step",
        status=TaskStatus.SUCCEEDED,
        attempts=1,
        created_at=NOW,
        started_at=NOW,
        finished_at=LATER,
        result={"action": "Tap", "args": {"element": [500, 300]}},
        error=None,
        webhook=WebhookView(status="delivered", attempts=1, last_status_code=200),
        metadata={"k": "v"},
    ),
    FileView(
        id=new_file_id(),
        project="acme",
        size=2_621_440,
        sha256="0" * 64,
        content_type="image/png",
        filename="screen.png",
        purpose="task_input",
        task_id="t1",
        created_at=NOW,
        expires_at=LATER,
        url="/v1/files/x/content",
    ),
    ErrorDetail(code="invalid_image", message="not a PNG", details=[{"loc": ["payload"]}]),
    ErrorBody.of("payload_too_large", "too big", {"max_bytes": 8_388_608}),
]


def test_every_message_type_has_a_sample() -> None:
    assert {type(sample) for sample in SAMPLES} == set(PROTOBUF_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_json_and_protobuf_decode_to_identical_messages(message: BaseModel) -> None:
    schema = type(message)
    from_json = decode(schema, encode(message, JSON), JSON)
    from_protobuf = decode(schema, encode(message, PROTOBUF), PROTOBUF)
    assert from_json == message
    assert from_protobuf == message
    assert from_protobuf.model_dump(mode="json") == from_json.model_dump(mode="json")


@pytest.mark.parametrize("schema", list(PROTOBUF_TYPES), ids=lambda s: s.__name__)
def test_proto_fields_match_the_models(schema: type[BaseModel]) -> None:
    fields = {f.name for f in protobuf_type(schema).DESCRIPTOR.fields}
    raw_only = {"files"} if schema is SubmitRequest else set()
    assert fields - raw_only == set(schema.model_fields)


def test_integers_stay_integers_through_struct() -> None:
    decoded = decode(AsyncTask, encode(TASK, PROTOBUF), PROTOBUF)
    assert isinstance(decoded.payload["max_tokens"], int)
    assert isinstance(decoded.payload["temperature"], float)
    assert decoded.payload["list"][5] == {"deep": {"n": -3}}


def test_garbage_is_a_decode_error_in_either_encoding() -> None:
    for content_type in (JSON, PROTOBUF):
        with pytest.raises(DecodeError):
            decode(TaskEvent, b"\xff\x00garbage\x07", content_type)
    with pytest.raises(DecodeError):
        decode(TaskEvent, b"{}", "text/plain")
    incomplete = to_protobuf(TaskLinks.for_task("t")).SerializeToString()
    with pytest.raises(DecodeError):
        decode(SubmitResponse, incomplete, PROTOBUF)


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", f"--python_out={tmp_path}", PROTO],
        cwd=ROOT,
        check=True,
    )
    generated = tmp_path / PROTO.replace(".proto", "_pb2.py")
    committed = ROOT / PROTO.replace(".proto", "_pb2.py")
    assert generated.read_text() == committed.read_text(), "run `make proto`"
