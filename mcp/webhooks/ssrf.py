"""The callback URL guard: where the platform agrees to send webhooks.

At submit, `check_callback_url` refuses a URL whose host is, or resolves to, an address inside
the platform's own networks (loopback, private, link-local, multicast, unspecified, reserved,
cloud metadata), unless the address is in `webhooks.allow_networks` (dev mode adds loopback).
At delivery, `resolve_callback` resolves and checks again (DNS rebinding) and returns the
checked addresses, so the connection goes to an address that passed the check.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from mcp.errors import CallbackRefused
from mcp.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata services; never a webhook destination, whatever the allow-list says.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
DEV_NETWORKS = ("127.0.0.0/8", "::1/128")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL whose every resolved address passed the guard."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


@functools.lru_cache(maxsize=4096)
def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, including the `inet_aton` forms.

    `2130706433`, `0x7f000001`, `017700000001` and `127.1` all mean 127.0.0.1 to a resolver.
    (Kept for the latest hosts: every attempt asks, and the answer depends on the text alone.)
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def allowed_networks(settings: Settings) -> tuple[IPNetwork, ...]:
    names = list(settings.webhooks.allow_networks)
    if settings.dev_mode:
        names.extend(DEV_NETWORKS)
    return _networks(tuple(names))


@functools.lru_cache(maxsize=64)
def _networks(names: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parsed once per list of names, not at every attempt's check."""
    return tuple(ipaddress.ip_network(name, strict=False) for name in names)


def refusal_reason(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why the platform will not connect to `address`, or None when it may."""
    return _refusal(address, tuple(allowed))


@functools.lru_cache(maxsize=4096)
def _refusal(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> str | None:
    """`refusal_reason`, kept for the latest addresses: it depends on them and `allowed` alone
    (a name is still resolved, and its addresses checked, at every attempt)."""
    effective = embedded_ipv4(address) or address
    if address in METADATA_ADDRESSES or effective in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if any(effective.version == net.version and effective in net for net in allowed):
        return None
    checks = (
        ("loopback", effective.is_loopback),
        ("link-local", effective.is_link_local),
        ("multicast", effective.is_multicast),
        ("unspecified", effective.is_unspecified),
        ("reserved", effective.is_reserved),
        ("private", effective.is_private),
        ("not globally routable", not effective.is_global),
    )
    for name, hit in checks:
        if hit:
            return f"a {name} address" if name != "not globally routable" else name
    return None


@functools.lru_cache(maxsize=4096)
def _split(url: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"callback_url is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise CallbackRefused(
            f"callback_url must use http or https, not {scheme or 'no scheme'!r}",
            {"url": url},
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise CallbackRefused("callback_url has no host", {"url": url})
    if parse_ip_literal(host) is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise CallbackRefused(f"callback_url host {host!r} is not a valid name") from exc
    return parts, host, port or DEFAULT_PORTS[scheme]


def _checked(url: str, host: str, addresses: Iterable[IPAddress], settings: Settings) -> None:
    allowed = allowed_networks(settings)
    for address in addresses:
        reason = refusal_reason(address, allowed)
        if reason is not None:
            shown = host if str(address) == host else f"{host} ({address})"
            raise CallbackRefused(
                f"callback_url host {shown} is {reason}; webhooks go to public addresses only",
                {"url": url, "address": str(address), "reason": reason},
            )


def _addresses(infos: Iterable[tuple[object, ...]]) -> tuple[IPAddress, ...]:
    found: dict[IPAddress, None] = {}
    for info in infos:
        sockaddr = info[4]
        if isinstance(sockaddr, tuple) and sockaddr:
            found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return tuple(found)


def _unresolvable(url: str, host: str, exc: OSError) -> CallbackRefused:
    return CallbackRefused(f"callback_url host {host!r} does not resolve: {exc}", {"url": url})


def check_callback_url(url: str, settings: Settings) -> None:
    """Raise `CallbackRefused` unless `url` may receive webhooks. Resolves the host (blocking)."""
    _, host, port = _split(url)
    literal = parse_ip_literal(host)
    if literal is not None:
        _checked(url, host, (literal,), settings)
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _unresolvable(url, host, exc) from exc
    _checked(url, host, _addresses(infos), settings)


async def resolve_callback(url: str, settings: Settings) -> CallbackTarget:
    """Resolve and check `url` now; the returned addresses are the only ones to connect to.

    Raises `CallbackRefused` for a forbidden destination and `OSError` when resolution fails
    (a failure worth retrying later).
    """
    parts, host, port = _split(url)
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(settings.webhooks.connect_timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = _addresses(infos)
        if not addresses:
            raise OSError(f"{host} has no address")
    _checked(url, host, addresses, settings)
    return CallbackTarget(url, parts.scheme.lower(), host, port, addresses)
