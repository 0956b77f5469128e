"""A poll of one task (`GET /v1/tasks/{id}`, `?wait=N`) served by `api.front.Front`: straight to
the read endpoint, observed under the route's template; any other query, a body or another path
through the stack. Against a real Redis, the API answers a poll through the front exactly as the
whole stack does (status, headers, body, the metrics series)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from api.app import create_app
from api.front import WAIT, Front, FrontedAPI
from api.services import Services
from mcp.errors import TaskNotFound
from mcp.settings import Settings
from mcp.store import SyncTaskStore
from schemas import AsyncTask, TaskEvent, TaskStatus
from tests.api.fronts import Stack, handlers

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _submit(request: Request) -> Response:
    raise AssertionError("not a submission")


def _get(path: str, query: bytes = b"", *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": list(headers),
        "query_string": query,
    }


def _serve(front: Front, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(front(scope, receive, send))
    return sent


def _observed(status: int) -> float:
    labels = {"route": "/v1/tasks/{task_id}", "method": "GET", "status": str(status)}
    count = REGISTRY.get_sample_value("autoglm_http_request_duration_seconds_count", labels)
    return count or 0.0


def test_a_poll_reaches_the_reader_without_the_stack_and_is_observed() -> None:
    stack = Stack()
    seen: list[tuple[str, float]] = []

    async def reader(request: Request) -> Response:
        seen.append((request.path_params["task_id"], request.scope[WAIT]))
        if request.path_params["task_id"] == "gone":
            raise TaskNotFound("no task 'gone'", {"task_id": "gone"})
        return Response(b'{"task_id": "t"}', media_type="application/json")

    front = Front(stack, _submit, handlers(), max_bytes=100, reader=reader, max_wait_s=300)
    before, missing = _observed(200), _observed(404)
    assert _serve(front, _get("/v1/tasks/t"))[0]["status"] == 200
    assert _serve(front, _get("/v1/tasks/t", b"wait=2.5"))[1]["body"] == b'{"task_id": "t"}'
    sent = _serve(front, _get("/v1/tasks/gone", b"wait=300"))
    assert sent[0]["status"] == 404 and b'"task_not_found"' in sent[1]["body"]
    assert seen == [("t", 0.0), ("t", 2.5), ("gone", 300.0)] and stack.calls == 0
    assert _observed(200) == before + 2 and _observed(404) == missing + 1


def test_any_other_get_goes_through_the_stack() -> None:
    stack = Stack()

    async def reader(request: Request) -> Response:
        raise AssertionError("not a plain poll")

    front = Front(stack, _submit, handlers(), max_bytes=100, reader=reader, max_wait_s=300)
    for scope in (
        _get("/v1/tasks/t", b"include=payload"),  # the route validates and answers it
        _get("/v1/tasks/t", b"wait=301"),  # over the bound: the route's 422
        _get("/v1/tasks/t", b"wait=-1"),
        _get("/v1/tasks/t", b"wait=1e3"),
        _get("/v1/tasks/t", b"wait="),
        _get("/v1/tasks/t", b"wait=1&wait=2"),
        _get("/v1/tasks/t", b"", (b"content-length", b"2")),  # a body: the stack's limit
        _get("/v1/tasks/t", b"", (b"transfer-encoding", b"chunked")),
        _get("/v1/tasks/t/events"),
        _get("/v1/tasks/"),
        _get("/v1/tasks"),
        {**_get("/v1/tasks/t"), "method": "HEAD"},
    ):
        _serve(front, scope)
    assert stack.calls == 12
    # Without a reader, a poll goes through the stack too.
    _serve(Front(stack, _submit, handlers(), max_bytes=100), _get("/v1/tasks/t"))
    assert stack.calls == 13


def test_the_api_s_polls_of_a_task_match_the_route_s() -> None:
    app = create_app(Settings(dev_mode=True))
    front = app.build_middleware_stack()
    assert isinstance(front, Front) and front.reader is not None and front.max_wait_s == 300


@pytest.fixture
async def apps(settings: Settings) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    services = Services.build(settings)
    fronted, whole = create_app(settings), create_app(settings)
    assert isinstance(whole, FrontedAPI)
    whole.front = None  # every request through the whole stack
    for app in (fronted, whole):
        app.state.services = services
    yield fronted, whole
    await services.store.redis.aclose()


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_a_poll_through_the_front_answers_as_the_stack_does(
    settings: Settings, apps: tuple[FastAPI, FastAPI]
) -> None:
    store = SyncTaskStore(settings)
    task = AsyncTask(task_id="polled", model="echo", action="generate", created_at=T0)
    event = TaskEvent.of(task, TaskStatus.QUEUED, at=T0, task=task)
    await asyncio.to_thread(store.apply_events, [event])
    fronted, whole = apps
    asks: list[tuple[str, dict[str, str]]] = [
        ("/v1/tasks/polled", {}),
        ("/v1/tasks/polled?wait=0.05", {}),
        ("/v1/tasks/polled", {"accept": "application/x-protobuf"}),
        ("/v1/tasks/polled", {"accept-encoding": "gzip"}),
        ("/v1/tasks/nowhere", {}),
        ("/v1/tasks/nowhere?wait=0.01", {}),
        ("/v1/tasks/polled", {"authorization": "Bearer not-a-key"}),
    ]
    answers: list[list[tuple[int, list[tuple[str, str]], bytes]]] = []
    for app in (fronted, whole):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            answers.append([])
            for path, headers in asks:
                before = _observed(200) + _observed(404) + _observed(401)
                answer = await client.get(path, headers=headers)
                after = _observed(200) + _observed(404) + _observed(401)
                assert after == before + 1, path  # one observation under the route's template
                answers[-1].append(
                    (answer.status_code, answer.headers.multi_items(), answer.content)
                )
    assert answers[0] == answers[1]
    statuses = [status for status, _, _ in answers[0]]
    assert statuses[:4] == [200, 200, 200, 200] and statuses[4:6] == [404, 404]
