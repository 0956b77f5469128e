"""Messages survive the trip through bytes, and malformed bytes are refused clearly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas import (
    AsyncTask,
    DecodeError,
    ErrorBody,
    MCPEnvelope,
    TaskError,
    TaskEvent,
    TaskResult,
    TaskStatus,
    dumps,
    loads,
)
from schemas.payloads import GeneratePayload

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_task_round_trip() -> None:
    task = AsyncTask(
        model="glm-tiny",
        action="generate",
        payload={"prompt": "Hello", "max_tokens": 4, "nested": [1, {"a": None}]},
        callback_url="https://example.org/hook",
        webhook_events_filter=("completed", "started"),
        created_at=NOW,
        metadata={"user": "x"},
    )
    assert loads(AsyncTask, dumps(task)) == task


def test_event_and_result_round_trip() -> None:
    task = AsyncTask(model="echo", action="generate", created_at=NOW)
    event = TaskEvent(task_id=task.task_id, status=TaskStatus.QUEUED, task=task, at=NOW)
    assert loads(TaskEvent, dumps(event)) == event
    result = TaskResult(
        task_id=task.task_id,
        status=TaskStatus.FAILED,
        model="echo",
        action="generate",
        created_at=NOW,
        finished_at=NOW,
        error=TaskError(code="timeout", message="ran past 1 s"),
    )
    assert loads(TaskResult, dumps(result)) == result


def test_envelope_and_error_body() -> None:
    env = MCPEnvelope(request_id="r-1", action="generate", payload={"prompt": "hi"})
    assert loads(MCPEnvelope, dumps(env)) == env
    body = ErrorBody.of("unknown_model", "no model 'x'", {"known": ["echo"]})
    assert loads(ErrorBody, dumps(body)).error.code == "unknown_model"


def test_messages_are_frozen() -> None:
    task = AsyncTask(model="echo", action="generate")
    with pytest.raises(ValidationError):
        task.model = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"model": 1, "action": "generate"}', "invalid field"),
        (b'{"model": "echo", "action": "generate", "surprise": 1}', "invalid field"),
        (b'{"model": "echo", "action": "generate", "callback_url": "ftp://x"}', "invalid field"),
    ],
)
def test_malformed_task_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as excinfo:
        loads(AsyncTask, raw)
    assert reason in str(excinfo.value)


def test_result_requires_terminal_status() -> None:
    with pytest.raises(ValidationError, match="terminal"):
        TaskResult(
            task_id="t", status=TaskStatus.RUNNING, model="echo", action="generate", created_at=NOW
        )


def test_status_ranks_are_monotonic() -> None:
    assert TaskStatus.QUEUED.rank < TaskStatus.RUNNING.rank < TaskStatus.SUCCEEDED.rank
    assert all(s.terminal for s in (TaskStatus.CANCELLED, TaskStatus.EXPIRED, TaskStatus.FAILED))


def test_generate_payload_needs_one_input() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        GeneratePayload()
    assert GeneratePayload(prompt="hi").max_tokens == 64
