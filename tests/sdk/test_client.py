"""The SDK against the real platform: typed answers, typed errors, retries, streams, waits."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from autoglm_client import AsyncClient, Client, TaskStatus
from autoglm_client.calls import Call
from autoglm_client.errors import (
    IdempotencyConflict,
    InvalidJSON,
    TaskNotFound,
    UnknownAction,
    UnknownModel,
)
from autoglm_client.models import Task

from mcp.names import Topics
from schemas import AsyncTask, loads
from tests.harness import Platform, scan

pytestmark = pytest.mark.integration
JSON = {"content-type": "application/json"}


def test_submit_wait_get_cancel_and_typed_errors(shared: Platform) -> None:
    with Client(shared.url) as client:
        accepted = client.submit("echo", payload={"n": 1}, metadata={"k": "v"})
        done = client.wait(accepted.task_id, timeout=60)
        assert isinstance(done, Task) and done.status is TaskStatus.SUCCEEDED
        assert done.result == {"echo": {"n": 1}} and done.metadata == {"k": "v"}
        assert client.get(accepted.task_id) == done
        assert client.cancel(accepted.task_id).status is TaskStatus.SUCCEEDED

        with pytest.raises(TaskNotFound) as missing:
            client.get("no-such-task")
        assert missing.value.status_code == 404 and missing.value.details == {
            "task_id": "no-such-task"
        }
        with pytest.raises(UnknownModel):
            client.submit("no-such-model", payload={})
        with pytest.raises(UnknownAction):
            client.submit("echo", "no-such-action")
        client.submit("echo", payload={"n": 2}, idempotency_key="fixed-key")
        with pytest.raises(IdempotencyConflict):
            client.submit("echo", payload={"n": 3}, idempotency_key="fixed-key")
        bad = Call("POST", "/v1/tasks", str, content=b"{not json", headers=JSON)
        with pytest.raises(InvalidJSON) as invalid:
            client.call(bad)
        assert invalid.value.status_code == 400


def test_infer_answers_the_finished_task(shared: Platform) -> None:
    with Client(shared.url) as client:
        answer = client.infer("echo", payload={"q": 1}, wait_s=30)
    assert isinstance(answer, Task) and answer.result == {"echo": {"q": 1}}


def test_rate_limited_submissions_are_retried_without_duplicates(shared: Platform) -> None:
    limited = shared.variant(server={"rate_limit_per_s": 4.0, "rate_limit_burst": 2})
    limited.api()
    run = uuid.uuid4().hex
    refused: list[int] = []

    def count(response: httpx.Response) -> None:
        if response.status_code == 429:
            assert response.headers["retry-after"]
            refused.append(response.status_code)

    http = httpx.Client(base_url=limited.url, event_hooks={"response": [count]})
    try:
        with Client(limited.url, http_client=http) as client:
            ids = [client.submit("echo", payload={"n": i, "run": run}).task_id for i in range(6)]
    finally:
        limited.stop()
    assert len(set(ids)) == 6 and refused  # some were refused, every one got in once
    queued = [
        loads(AsyncTask, v)
        for _, v, _ in scan(shared.settings, Topics.of(shared.settings).tasks("echo"))
    ]
    assert sorted(t.task_id for t in queued if t.payload.get("run") == run) == sorted(ids)


def test_stream_resumes_after_the_last_event_id(shared: Platform) -> None:
    with Client(shared.url) as client:
        task = client.submit("glm-tiny", payload={"prompt": "Hello", "max_tokens": 12})
        everything = list(client.stream(task.task_id, timeout=120))
        tokens = [e for e in everything if e.event == "token"]
        assert everything[-1].event == "end" and len(tokens) >= 3
        resumed = list(client.stream(task.task_id, last_event_id=tokens[1].id))
        assert resumed == everything[everything.index(tokens[1]) + 1 :]
        text = "".join(e.delta for e in tokens)
        assert client.wait(task.task_id).text == text


def test_async_client(shared: Platform) -> None:
    async def scenario() -> list[Task]:
        async with AsyncClient(shared.url) as client:
            accepted = await asyncio.gather(
                *(client.submit("echo", payload={"n": i}) for i in range(5))
            )
            return list(
                await asyncio.gather(*(client.wait(a.task_id, timeout=60) for a in accepted))
            )

    done = asyncio.run(scenario())
    assert [t.result for t in done] == [{"echo": {"n": i}} for i in range(5)]
    assert all(t.status is TaskStatus.SUCCEEDED for t in done)


def test_list_pages_through_tasks_and_events_show_the_timeline(shared: Platform) -> None:
    run = uuid.uuid4().hex
    with Client(shared.url) as client:
        ids = [
            client.submit("echo", payload={"n": i}, metadata={"run": run}).task_id for i in range(3)
        ]
        for task_id in ids:
            client.wait(task_id, timeout=60)
        listed = [t.task_id for t in client.list(model="echo", page_size=2, max_items=50)]
        assert set(ids) <= set(listed)
        timeline = [e.status for e in client.events(ids[0])]
        assert timeline[0] is TaskStatus.QUEUED and timeline[-1] is TaskStatus.SUCCEEDED
