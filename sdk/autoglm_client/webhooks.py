"""Receiving the platform's webhooks: verify the Standard Webhooks signature, drop redeliveries.

    from autoglm_client.webhooks import WebhookReceiver

    async def on_event(event):            # called once per webhook-id
        print(event.type, event.data.task_id, event.data.result)

    receiver = WebhookReceiver(secret="whsec_...", handler=on_event)
    app.add_route("/hooks/autoglm", receiver, methods=["POST"])   # Starlette or FastAPI

`WebhookReceiver` is a plain ASGI application, so it also runs on its own under any ASGI server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from autoglm_client.errors import WebhookVerificationError
from autoglm_client.models import WebhookEvent

DEFAULT_TOLERANCE_S = 300
Secrets = str | Sequence[str]


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookVerificationError("the secret is not whsec_ followed by base64") from exc


def signature(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, as the platform signs."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: Secrets,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> WebhookEvent:
    """The event of a genuine webhook, else `WebhookVerificationError`.

    `secret` may list several secrets (yours during a rotation); any one of them may sign."""
    raw = body.encode() if isinstance(body, str) else body
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"].split()
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from None
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = {signature(s, msg_id, timestamp, raw).partition(",")[2] for s in secrets}
    offered = [sig for version, _, sig in (s.partition(",") for s in signatures) if version == "v1"]
    if not any(hmac.compare_digest(o, e) for o in offered for e in expected):
        raise WebhookVerificationError("no valid signature")
    try:
        body_json = json.loads(raw)
        return WebhookEvent.model_validate({**body_json, "id": msg_id})
    except (ValueError, TypeError, ValidationError) as exc:
        raise WebhookVerificationError(f"the body is not a webhook event: {exc}") from exc


class Deduplicator(Protocol):
    """Remembers handled webhook-ids. Back it with your database to survive restarts."""

    async def claim(self, webhook_id: str) -> bool:
        """True for the first delivery of this id (later ones are duplicates)."""

    async def release(self, webhook_id: str) -> None:
        """Handling failed: let the next delivery of this id through."""


class MemoryDeduplicator:
    """In-process memory of the latest `max_entries` ids, each kept for `ttl_s` (the
    platform retries for about three days)."""

    def __init__(self, max_entries: int = 100_000, ttl_s: float = 4 * 86_400) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def claim(self, webhook_id: str) -> bool:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now:
            self._seen.popitem(last=False)
        if webhook_id in self._seen:
            return False
        self._seen[webhook_id] = now + self.ttl_s
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    async def release(self, webhook_id: str) -> None:
        self._seen.pop(webhook_id, None)


Handler = Callable[[WebhookEvent], Awaitable[None] | None]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class WebhookReceiver:
    """Verifies each webhook, calls `handler` once per `webhook-id`, and answers the platform:
    2xx delivered (also for a duplicate), 401 bad signature, 500 when the handler raised (the
    platform retries; the id is released so the retry is handled)."""

    def __init__(
        self,
        secret: Secrets | Callable[[], Secrets],
        handler: Handler,
        *,
        dedup: Deduplicator | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_body_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.secret = secret
        self.handler = handler
        self.dedup: Deduplicator = dedup or MemoryDeduplicator()
        self.tolerance_s = tolerance_s
        self.max_body_bytes = max_body_bytes
        self.handled = 0
        self.duplicates = 0
        self.rejected = 0

    async def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Framework-free core: (HTTP status, JSON answer) for one delivery."""
        secret = self.secret() if callable(self.secret) else self.secret
        try:
            event = verify(secret, headers, body, tolerance_s=self.tolerance_s)
        except WebhookVerificationError as exc:
            self.rejected += 1
            return 401, {"error": {"code": "invalid_signature", "message": str(exc)}}
        if not await self.dedup.claim(event.id):
            self.duplicates += 1
            return 200, {"status": "duplicate", "webhook_id": event.id}
        try:
            outcome = self.handler(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            await self.dedup.release(event.id)
            return 500, {"error": {"code": "handler_failed", "message": repr(exc)}}
        self.handled += 1
        return 200, {"status": "accepted", "webhook_id": event.id}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405, {"error": {"code": "method_not_allowed", "message": "POST"}})
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            body.extend(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body_bytes:
                await _answer(send, 413, {"error": {"code": "payload_too_large", "message": ""}})
                return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, answer = await self.handle(headers, bytes(body))
        await _answer(send, status, answer)


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
