"""Webhook helpers: `verify` agrees with the independent `standardwebhooks` signer; the receiver
de-duplicates on webhook-id and lets a retry through after its handler failed."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from autoglm_client import MemoryDeduplicator, WebhookEvent, WebhookReceiver, verify
from autoglm_client.errors import WebhookVerificationError
from autoglm_client.webhooks import signature
from standardwebhooks.webhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"sdk-tests-secret-0123456789abcdef").decode()
OTHER = "whsec_" + base64.b64encode(b"sdk-tests-other-secret-987654321").decode()
TASK = {
    "task_id": "t1",
    "model": "echo",
    "action": "generate",
    "status": "succeeded",
    "created_at": "2026-01-01T00:00:00Z",
    "result": {"echo": {"n": 1}},
}
BODY = json.dumps({"type": "task.succeeded", "timestamp": "2026-01-01T00:00:01Z", "data": TASK})


def signed(msg_id: str = "msg_1", secret: str = SECRET, body: str = BODY) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def test_verify_accepts_what_standard_webhooks_signs() -> None:
    event = verify(SECRET, signed(), BODY.encode())
    assert event.id == "msg_1" and event.type == "task.succeeded"
    assert event.data.task_id == "t1" and event.data.result == {"echo": {"n": 1}}


def test_verify_with_rotated_secrets_and_several_signatures() -> None:
    headers = signed(secret=OTHER)
    assert verify([SECRET, OTHER], headers, BODY).id == "msg_1"
    both = signed()
    both["webhook-signature"] += " " + signature(OTHER, "msg_1", both["webhook-timestamp"], b"x")
    assert verify(SECRET, both, BODY).id == "msg_1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: {**h, "webhook-signature": "v1,AAAA"},
        lambda h: {**h, "webhook-id": "msg_2"},
        lambda h: {**h, "webhook-timestamp": str(int(time.time()) - 3600)},
        lambda h: {**h, "webhook-timestamp": "soon"},
        lambda h: {k: v for k, v in h.items() if k != "webhook-signature"},
    ],
)
def test_verify_refuses_tampered_headers(
    tamper: Callable[[dict[str, str]], dict[str, str]],
) -> None:
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, tamper(signed()), BODY)


def test_verify_refuses_another_secret_and_another_body() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(OTHER, signed(), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, signed(), BODY.replace("t1", "t2"))


def test_memory_deduplicator_forgets_after_ttl_and_capacity() -> None:
    async def scenario() -> None:
        dedup = MemoryDeduplicator(max_entries=2, ttl_s=0.05)
        assert await dedup.claim("a") and not await dedup.claim("a")
        await asyncio.sleep(0.06)
        assert await dedup.claim("a")
        assert await dedup.claim("b") and await dedup.claim("c")
        assert await dedup.claim("a")  # pushed out by capacity
        await dedup.release("c")
        assert await dedup.claim("c")

    asyncio.run(scenario())


def test_receiver_handles_once_and_retries_after_a_failed_handler() -> None:
    handled: list[WebhookEvent] = []
    failures = [RuntimeError("database down")]

    async def handler(event: WebhookEvent) -> None:
        if failures:
            raise failures.pop()
        handled.append(event)

    receiver = WebhookReceiver(SECRET, handler)

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://hook") as client:
            headers = signed("msg_9")
            codes = []
            for _ in range(3):
                answer = await client.post("/", content=BODY, headers=headers)
                codes.append(answer.status_code)
            codes.append(
                (await client.post("/", content=BODY, headers=signed(secret=OTHER))).status_code
            )
            codes.append((await client.get("/")).status_code)
            return codes

    assert asyncio.run(scenario()) == [500, 200, 200, 401, 405]
    assert [e.id for e in handled] == ["msg_9"]
    assert (receiver.handled, receiver.duplicates, receiver.rejected) == (1, 1, 1)
