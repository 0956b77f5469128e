"""The refusal itself, at the ASGI layer: a submission over the bound is answered 503 with the
platform's error body and Retry-After, without its body being read or the app being called."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.types import Message

from api.admission import AdaptiveLimit, AdmissionControl
from mcp.settings import ServerSettings
from schemas.errors import ErrorBody


def _scope(path: str = "/v1/tasks") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
    }


async def _scenario() -> tuple[list[Message], int, int]:
    settings = ServerSettings(
        admission_min_inflight=1,
        admission_max_inflight=1,
        admission_max_wait_ms=0,
        admission_retry_after_s=3,
    )
    release = asyncio.Event()
    calls = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal calls
        calls += 1
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"{}", "more_body": False}

    limit = AdaptiveLimit(1, 1, 0.1)
    middleware = AdmissionControl(app, settings, limit)
    holder_sent: list[Message] = []
    refused_sent: list[Message] = []

    async def holder_send(message: Message) -> None:
        holder_sent.append(message)

    async def refused_send(message: Message) -> None:
        refused_sent.append(message)

    holder = asyncio.create_task(middleware(_scope(), receive, holder_send))
    await asyncio.sleep(0)  # the first submission takes the only slot
    await middleware(_scope(), receive, refused_send)
    release.set()
    await holder
    assert holder_sent[0]["status"] == 202
    return refused_sent, calls, reads


def test_a_refusal_is_a_503_with_retry_after_and_the_error_body() -> None:
    sent, calls, reads = asyncio.run(_scenario())
    assert calls == 1 and reads == 1  # the refused submission reached neither app nor body
    start, body = sent
    assert start["type"] == "http.response.start" and start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"3"
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    error = ErrorBody.model_validate(orjson.loads(body["body"])).error
    assert error.code == "overloaded"
    assert error.details == {"in_flight": 1, "limit": 1, "retry_after_s": 3}
    assert "retry in 3 s" in error.message
