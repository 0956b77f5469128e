"""The webhook HTTP client: an aiohttp connector that connects only to addresses the SSRF guard
has just checked.

The request keeps its URL, so the Host header, TLS SNI and certificate verification all use the
callback's hostname, and kept-alive connections are pooled per hostname; only the TCP connect is
redirected to the checked addresses. The checked target travels in a context variable set around
each request (`pinned`), because aiohttp opens connections from inside the request's own task:

- the resolver answers a name only for the pinned host and port, and only with its checked
  addresses (there is no DNS cache to answer for it later);
- every socket is made by `_socket`, which refuses an address the pinned target does not hold,
  so a URL whose host is an IP literal (which aiohttp does not resolve) is held to it too.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult

from mcp.webhooks.ssrf import CallbackTarget, parse_ip_literal

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


def _refused(reason: str) -> OSError:
    # With an errno, so aiohttp's connection error shows the reason (it shows `strerror`).
    return OSError(errno.EACCES, reason)


def _checked(host: str, port: int) -> CallbackTarget:
    target = _TARGET.get()
    if target is None or not _same_host(target.host, host) or target.port != port:
        raise _refused(f"{host}:{port} was not checked for this request")
    return target


class PinnedResolver(AbstractResolver):
    """Resolves the pinned host to its checked addresses; any other name is refused."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = _checked(host, port)
        if not target.addresses:
            raise _refused(f"{host} has no checked address")
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in target.addresses
        ]

    async def close(self) -> None:
        return None


def _socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """The socket for one connection attempt: only to an address the pinned target holds."""
    family, kind, proto, _, sockaddr = addr_info
    host = str(sockaddr[0])
    target = _TARGET.get()
    address = parse_ip_literal(host.split("%", 1)[0])
    if target is None or address is None or address not in target.addresses:
        raise _refused(f"{host} was not checked for this request")
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    return sock


def default_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def pinned_session(
    limit: int,
    limit_per_host: int,
    keepalive_s: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A session whose connections go only to pinned, checked addresses (call in a running
    loop). It keeps no cookies (receivers never see each other's), reads no proxy settings from
    the environment, and follows no redirects unless a request asks."""
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=limit_per_host,
        keepalive_timeout=keepalive_s,
        use_dns_cache=False,
        resolver=PinnedResolver(),
        socket_factory=_socket,
        ssl=ssl_context or default_ssl_context(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None),
    )
