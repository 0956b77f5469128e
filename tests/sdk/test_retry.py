"""The client's retry policy and configuration, against a scripted HTTP transport (the real
platform's 429s are exercised in test_client.py)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from autoglm_client import Client, RetryPolicy
from autoglm_client.errors import (
    APIError,
    BrokerUnavailable,
    ConnectionFailed,
    NotFoundError,
    RateLimited,
    ServerError,
)

FAST = RetryPolicy(backoff_s=0.001, max_backoff_s=0.01)
ACCEPTED = {"task_id": "t1", "status": "queued", "created_at": "2026-01-01T00:00:00Z"}


def error(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": code, "details": None}}
    return httpx.Response(status, json=body, headers=headers)


def scripted(
    replies: list[httpx.Response | Exception], seen: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return handle


def client_for(
    replies: list[httpx.Response | Exception], seen: list[httpx.Request], **kwargs: object
) -> Client:
    transport = httpx.MockTransport(scripted(replies, seen))
    http = httpx.Client(transport=transport, base_url="http://api")
    return Client("http://api", http_client=http, retry=FAST, **kwargs)  # type: ignore[arg-type]


def test_overload_is_retried_with_the_same_idempotency_key() -> None:
    seen: list[httpx.Request] = []
    replies: list[httpx.Response | Exception] = [
        error(503, "broker_unavailable", **{"retry-after": "0"}),
        httpx.ConnectError("refused"),
        error(429, "rate_limited", **{"retry-after": "0"}),
        httpx.Response(202, json=ACCEPTED),
    ]
    with client_for(replies, seen) as client:
        assert client.submit("echo", payload={"n": 1}).task_id == "t1"
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 4 and len(keys) == 1 and next(iter(keys))


def test_a_long_retry_after_or_too_many_refusals_reach_the_caller() -> None:
    seen: list[httpx.Request] = []
    refusal = error(429, "rate_limited", **{"retry-after": "120"})
    with client_for([refusal], seen) as client, pytest.raises(RateLimited) as limited:
        client.submit("echo")
    assert limited.value.retry_after_s == 120 and len(seen) == 1
    replies: list[httpx.Response | Exception] = [error(503, "broker_unavailable")] * 6
    with client_for(replies, seen := []) as client, pytest.raises(BrokerUnavailable):
        client.submit("echo")
    assert len(seen) == 6


def test_a_request_that_may_have_arrived_is_only_resent_when_idempotent() -> None:
    seen: list[httpx.Request] = []
    replies: list[httpx.Response | Exception] = [httpx.ReadTimeout("slow")]
    with client_for(replies, seen) as client, pytest.raises(ConnectionFailed):
        client.rotate_webhook_secret()
    assert len(seen) == 1
    task = {**ACCEPTED, "model": "echo", "action": "generate"}
    replies = [httpx.ReadTimeout("slow"), httpx.Response(200, json=task)]
    with client_for(replies, seen := []) as client:
        assert client.get("t1").task_id == "t1"
    assert len(seen) == 2


def test_unknown_codes_map_by_status() -> None:
    replies: list[httpx.Response | Exception] = [
        error(404, "file_not_found"),
        error(500, "internal_error"),
        error(418, "teapot"),
    ]
    with client_for(replies, []) as client:
        for expected in (NotFoundError, ServerError, APIError):
            with pytest.raises(expected) as caught:
                client.get("t1")
            assert type(caught.value) is expected


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_URL", "http://elsewhere:9000/")
    monkeypatch.setenv("AUTOGLM_API_KEY", "k-123")
    with Client() as client:
        assert client.config.base_url == "http://elsewhere:9000"
        assert client.config.headers()["authorization"] == "Bearer k-123"
    with Client("http://here", api_key="other") as client:
        assert client.config.headers()["authorization"] == "Bearer other"
