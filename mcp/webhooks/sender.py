"""One delivery attempt: check the destination again, sign, POST, classify the answer."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from mcp.errors import CallbackRefused
from mcp.settings import Settings
from mcp.telemetry import tracing
from mcp.webhooks.deliveries import Delivery
from mcp.webhooks.policy import parse_retry_after
from mcp.webhooks.secrets import WebhookSecrets
from mcp.webhooks.signing import webhook_headers
from mcp.webhooks.ssrf import CallbackTarget, resolve_callback
from mcp.webhooks.transport import pinned, pinned_session

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
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        hooks = settings.webhooks
        self.settings = settings
        self.secrets = secrets
        self.total_timeout_s = hooks.timeout_s
        self.connect_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=hooks.connect_timeout_s
        )
        self.ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Made on first use: an aiohttp session belongs to the running event loop."""
        if self._session is None:
            hooks = self.settings.webhooks
            self._session = pinned_session(
                max(1, hooks.max_concurrency),
                max(1, hooks.per_host_concurrency),
                keepalive_s=30.0,
                ssl_context=self.ssl_context,
                headers={"user-agent": USER_AGENT},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
                async with (
                    asyncio.timeout(self.total_timeout_s),
                    self.session.post(
                        delivery.url,
                        data=delivery.body,
                        headers=headers,
                        allow_redirects=False,
                        timeout=self.connect_timeout,
                    ) as response,
                ):
                    await _drain(response)
        except aiohttp.ServerTimeoutError as exc:
            return Attempt("retry", None, f"timed out: {type(exc).__name__}")
        except TimeoutError:
            return Attempt("retry", None, f"no answer within {self.total_timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return Attempt("retry", None, f"{type(exc).__name__}: {exc}")
        return classify(response.status, response.headers.get("retry-after"), time.time())


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read a bounded answer so the connection can be reused; the body itself is ignored. An
    answer left unread closes its connection instead."""
    seen = 0
    content = response.content
    while not content.at_eof():
        chunk = await content.readany()
        if not chunk:
            break
        seen += len(chunk)
        if seen > MAX_RESPONSE_BYTES:
            break
