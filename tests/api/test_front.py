"""The submission path of `api.front.Front`: straight to the endpoint, with what the middleware
stack would have done for it (metrics, admission, body limit, compression, error handlers);
everything else through the stack."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from api.admission import AdaptiveLimit, Admission
from api.app import create_app
from api.front import Front
from mcp.errors import QuotaExceeded
from mcp.settings import ServerSettings, Settings
from schemas.errors import ErrorBody
from tests.api.fronts import Stack, handlers


def _scope(
    body: bytes = b"{}", length: bool = True, path: str = "/v1/tasks", **headers: str
) -> dict[str, Any]:
    raw = [(b"content-type", b"application/json")]
    if length:
        raw.append((b"content-length", str(len(body)).encode()))
    raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": "POST", "path": path, "headers": raw, "query_string": b""}


def _serve(front: Front, scope: dict[str, Any], body: bytes = b"{}") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(front(scope, receive, send))
    return sent


def _observed(route: str, status: int) -> float:
    labels = {"route": route, "method": "POST", "status": str(status)}
    count = REGISTRY.get_sample_value("autoglm_http_request_duration_seconds_count", labels)
    return count or 0.0


def _front(endpoint: Any, stack: Stack, **options: Any) -> Front:
    return Front(stack, endpoint, handlers(), max_bytes=100, **options)


def test_a_submission_reaches_its_endpoint_without_the_stack_and_is_observed() -> None:
    stack = Stack()
    seen: list[bytes] = []

    async def endpoint(request: Request) -> Response:
        seen.append(await request.body())
        return Response(b'{"task_id": "t"}', status_code=202, media_type="application/json")

    limit = AdaptiveLimit(1, 1, 0.1)
    admission = Admission(ServerSettings(), limit)
    before = _observed("/v1/tasks", 202)
    sent = _serve(_front(endpoint, stack, admission=admission), _scope(b'{"a": 1}'), b'{"a": 1}')
    assert stack.calls == 0 and seen == [b'{"a": 1}']
    assert sent[0]["status"] == 202 and sent[1]["body"] == b'{"task_id": "t"}'
    assert _observed("/v1/tasks", 202) == before + 1
    assert limit.in_flight == 0  # the slot was taken and given back


def test_everything_else_goes_through_the_stack() -> None:
    stack = Stack()

    async def endpoint(request: Request) -> Response:
        raise AssertionError("not a fast-path submission")

    front = _front(endpoint, stack)
    _serve(front, _scope(length=False))  # streamed: BodySizeLimit counts it in the stack
    _serve(front, _scope(path="/v1/tasks:batch"))
    _serve(front, {**_scope(), "method": "GET"})
    assert stack.calls == 3


def test_a_body_over_the_limit_is_a_413_with_the_error_body_and_no_endpoint() -> None:
    stack = Stack()

    async def endpoint(request: Request) -> Response:
        raise AssertionError("a refused body reaches no endpoint")

    before = _observed("unmatched", 413)
    sent = _serve(_front(endpoint, stack), _scope(b"x" * 101), b"x" * 101)
    assert sent[0]["status"] == 413
    error = ErrorBody.model_validate(orjson.loads(sent[1]["body"])).error
    assert error.code == "payload_too_large" and error.details == {"max_bytes": 100}
    assert _observed("unmatched", 413) == before + 1


def test_a_refused_submission_is_a_503_with_retry_after() -> None:
    stack = Stack()

    async def endpoint(request: Request) -> Response:
        raise AssertionError("a refused submission reaches no endpoint")

    limit = AdaptiveLimit(1, 1, 0.1)
    limit.acquire()  # the only slot is taken
    admission = Admission(ServerSettings(admission_retry_after_s=3), limit)
    sent = _serve(_front(endpoint, stack, admission=admission), _scope())
    assert sent[0]["status"] == 503
    assert dict(sent[0]["headers"])[b"retry-after"] == b"3"
    assert ErrorBody.model_validate(orjson.loads(sent[1]["body"])).error.code == "overloaded"


def test_a_platform_error_gets_its_handler_s_answer() -> None:
    async def endpoint(request: Request) -> Response:
        raise QuotaExceeded("over the quota", retry_after_s=1.0, details={"max_active": 1})

    before = _observed("/v1/tasks", 429)
    sent = _serve(_front(endpoint, Stack()), _scope())
    assert sent[0]["status"] == 429
    assert b"retry-after" in dict(sent[0]["headers"])
    assert ErrorBody.model_validate(orjson.loads(sent[1]["body"])).error.code == "quota_exceeded"
    assert _observed("/v1/tasks", 429) == before + 1


def test_an_unhandled_error_is_a_500_and_goes_on_to_the_server() -> None:
    async def endpoint(request: Request) -> Response:
        raise RuntimeError("boom")

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(_front(endpoint, Stack())(_scope(), receive, send))
    assert sent[0]["status"] == 500 and sent[1]["body"] == b"Internal Server Error"


def test_a_client_that_asks_for_gzip_gets_it() -> None:
    answer = orjson.dumps({"padding": "x" * 2000})

    async def endpoint(request: Request) -> Response:
        return Response(answer, status_code=202, media_type="application/json")

    front = _front(endpoint, Stack(), gzip_min_bytes=1024)
    sent = _serve(front, _scope(accept_encoding="gzip"))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 202 and headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(b"".join(m.get("body", b"") for m in sent[1:])) == answer


def test_the_api_serves_submissions_through_front() -> None:
    app = create_app(Settings(dev_mode=True))
    assert isinstance(app.build_middleware_stack(), Front)
