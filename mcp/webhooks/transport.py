"""An httpx transport that connects only to addresses the SSRF guard has just checked.

The request keeps its URL, so the Host header, TLS SNI and certificate verification all use
the callback's hostname; only the TCP connect is redirected to the checked address. The address
travels in a context variable set around each request, because httpcore opens connections from
inside the request's own task.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import certifi
import httpcore
import httpx

from mcp.webhooks.ssrf import CallbackTarget

_TARGET: ContextVar[CallbackTarget | None] = ContextVar("webhook_target", default=None)


@contextmanager
def pinned(target: CallbackTarget) -> Iterator[None]:
    """Within this block, connections to `target.host` go to `target.addresses` only."""
    token = _TARGET.set(target)
    try:
        yield
    finally:
        _TARGET.reset(token)


def _same_host(a: str, b: str) -> bool:
    return a.strip("[]").rstrip(".").lower() == b.strip("[]").rstrip(".").lower()


class PinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = _TARGET.get()
        if target is None or not _same_host(target.host, host) or target.port != port:
            raise httpcore.ConnectError(f"{host}:{port} was not checked for this request")
        failure: Exception | None = None
        for address in target.addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} has no checked address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks never go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        context = ssl_context or ssl.create_default_context(cafile=certifi.where())
        super().__init__(verify=context, limits=limits, trust_env=False)
        # httpx does not take a network backend; its pool is the one place to plug it in.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(),
        )
