"""One delivery attempt: check the destination again, sign, POST, classify the answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from mcp.errors import CallbackRefused
from mcp.settings import Settings
from mcp.telemetry import tracing
from mcp.webhooks.deliveries import Delivery
from mcp.webhooks.policy import parse_retry_after
from mcp.webhooks.secrets import WebhookSecrets
from mcp.webhooks.signing import webhook_headers
from mcp.webhooks.ssrf import CallbackTarget, resolve_callback
from mcp.webhooks.transport import PinnedTransport, pinned

USER_AGENT = "autoglm-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024

Verdict = Literal["delivered", "retry", "stop"]
"""What one attempt means for its delivery: done, try again later, or never again."""


@dataclass(frozen=True)
class Attempt:
    outcome: Verdict
    status_code: int | None = None
    error: str = ""
    retry_after: float | None = None


def classify(status_code: int, retry_after: str | None, now: float) -> Attempt:
    """2xx delivered; 410 stop; anything else retried (after Retry-After on 429/503)."""
    if 200 <= status_code < 300:
        return Attempt("delivered", status_code)
    if status_code == 410:
        return Attempt("stop", status_code, "the receiver answered 410 Gone")
    wait = parse_retry_after(retry_after, now) if status_code in (429, 503) else None
    return Attempt("retry", status_code, f"the receiver answered {status_code}", wait)


class WebhookSender:
    def __init__(
        self,
        settings: Settings,
        secrets: WebhookSecrets,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        hooks = settings.webhooks
        self.settings = settings
        self.secrets = secrets
        limits = httpx.Limits(
            max_connections=hooks.max_concurrency,
            max_keepalive_connections=hooks.max_concurrency,
            keepalive_expiry=30,
        )
        self.total_timeout_s = hooks.timeout_s
        self.client = httpx.AsyncClient(
            transport=transport or PinnedTransport(limits),
            timeout=httpx.Timeout(hooks.timeout_s, connect=hooks.connect_timeout_s),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, delivery: Delivery) -> Attempt:
        try:
            target = await resolve_callback(delivery.url, self.settings)
        except CallbackRefused as exc:
            return Attempt("stop", None, exc.message)
        except OSError as exc:
            return Attempt("retry", None, f"cannot resolve the callback host: {exc}")
        secrets = await self.secrets.get(delivery.project)
        headers = webhook_headers(secrets, delivery.webhook_id, delivery.body)
        with tracing.span(
            f"POST webhook {delivery.type}",
            delivery.traceparent or None,
            "CLIENT",
            {
                "http.request.method": "POST",
                "server.address": delivery.destination,
                "autoglm.task_id": delivery.task_id,
                "autoglm.webhook_id": delivery.webhook_id,
                "autoglm.attempt": delivery.attempts + 1,
            },
        ) as span:
            traceparent = tracing.traceparent_of(span, delivery.traceparent or None)
            if traceparent:
                headers["traceparent"] = traceparent
            attempt = await self._post(delivery, target, headers)
            if span is not None:
                if attempt.status_code is not None:
                    span.set_attribute("http.response.status_code", attempt.status_code)
                if attempt.outcome != "delivered":
                    tracing.error(span, attempt.error or attempt.outcome)
            return attempt

    async def _post(
        self, delivery: Delivery, target: CallbackTarget, headers: dict[str, str]
    ) -> Attempt:
        try:
            with pinned(target):
                async with asyncio.timeout(self.total_timeout_s):
                    async with self.client.stream(
                        "POST", delivery.url, content=delivery.body, headers=headers
                    ) as response:
                        await _drain(response)
        except TimeoutError:
            return Attempt("retry", None, f"no answer within {self.total_timeout_s:g} s")
        except httpx.TimeoutException as exc:
            return Attempt("retry", None, f"timed out: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Attempt("retry", None, f"{type(exc).__name__}: {exc}")
        return classify(response.status_code, response.headers.get("retry-after"), time.time())


async def _drain(response: httpx.Response) -> None:
    """Read a bounded answer so the connection can be reused; the body itself is ignored."""
    seen = 0
    async for chunk in response.aiter_raw():
        seen += len(chunk)
        if seen > MAX_RESPONSE_BYTES:
            break
