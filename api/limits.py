"""Request limits: body size (413) and per-project submission rate (429)."""

from __future__ import annotations

import time

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import platform_error_response
from mcp.errors import PayloadTooLarge, RateLimited
from mcp.settings import QuotaSettings, ServerSettings


class BodySizeLimit:
    """Refuses bodies over `max_bytes` (or the limit of their path in `paths`), whether
    announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_bytes = max_bytes
        self.paths = paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        max_bytes = self.paths.get(scope["path"], self.default_bytes)
        length = content_length(scope)
        if length is not None:
            if length > max_bytes:
                await refuse_too_large(scope, receive, send, max_bytes)
            else:  # the server delivers no more than the announced length
                await self.app(scope, receive, send)
            return
        seen = 0
        too_large = False

        async def counted() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    too_large = True
                    raise _too_large(max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            # The app may turn the interrupted read into its own error; ours replaces it.
            if not too_large:
                await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except PayloadTooLarge:
            pass
        if too_large:
            await refuse_too_large(scope, receive, send, max_bytes)


def content_length(scope: Scope) -> int | None:
    """The body length a request announced (its Content-Length); None for a streamed body."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def wants_gzip(scope: Scope) -> bool:
    """Whether the client takes a gzip answer (its Accept-Encoding)."""
    headers = scope.get("headers", [])
    return any(name == b"accept-encoding" and b"gzip" in value for name, value in headers)


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {max_bytes} bytes", {"max_bytes": max_bytes})


async def refuse_too_large(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    """The 413 of a body over `max_bytes`, with the API.md error body."""
    await platform_error_response(_too_large(max_bytes))(scope, receive, send)


class RateLimiter:
    """A token bucket per project, in this process; `quotas` may set a project's own rate."""

    def __init__(self, server: ServerSettings, quotas: QuotaSettings) -> None:
        self.server = server
        self.quotas = quotas
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, project: str) -> None:
        quota = self.quotas.of(project)
        per_s = self.server.rate_limit_per_s if quota.rate_per_s is None else quota.rate_per_s
        if per_s <= 0:
            return
        burst = float(self.server.rate_limit_burst if quota.burst is None else quota.burst)
        now = time.monotonic()
        tokens, at = self._buckets.get(project, (burst, now))
        tokens = min(burst, tokens + (now - at) * per_s)
        if tokens < 1:
            self._buckets[project] = (tokens, now)
            raise RateLimited((1 - tokens) / per_s)
        self._buckets[project] = (tokens - 1, now)


class CompressResponses:
    """gzip for clients that ask for it; everyone else pays nothing for the feature."""

    def __init__(self, app: ASGIApp, minimum_size: int) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and wants_gzip(scope):
            await self.gzip(scope, receive, send)
            return
        await self.app(scope, receive, send)
