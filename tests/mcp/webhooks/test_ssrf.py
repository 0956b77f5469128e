"""The callback URL guard. Addresses are only checked here; nothing connects anywhere."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from pydantic import HttpUrl, TypeAdapter

from mcp.errors import CallbackRefused
from mcp.settings import Settings
from mcp.webhooks.ssrf import check_callback_url, parse_ip_literal, resolve_callback


def _settings(dev_mode: bool = False, allow: list[str] | None = None) -> Settings:
    return Settings.model_validate(
        {"dev_mode": dev_mode, "webhooks": {"allow_networks": allow or []}}
    )


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the tests resolve; any other name goes to the real resolver."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in table:
            out = []
            for addr in table[host]:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                sockaddr = (addr, port or 0, 0, 0) if ":" in addr else (addr, port or 0)
                out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return table


REFUSED = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.8.9.10:8080/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://172.31.255.254/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.10.10/", "link-local"),
    ("http://100.100.100.200/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[::ffff:7f00:1]/hook", "loopback"),
    ("http://[::ffff:10.0.0.1]/hook", "private"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[::]/", "unspecified"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://0xa9fea9fe/", "metadata"),
    ("http://localhost:9000/hook", "loopback"),
    ("http://LOCALHOST./hook", "loopback"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused_destinations(url: str, reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason) as excinfo:
        check_callback_url(url, _settings())
    assert excinfo.value.code == "callback_url_refused"


@pytest.mark.parametrize(("url", "reason"), REFUSED[:26])
def test_refused_after_pydantic_normalised_the_url(url: str, reason: str) -> None:
    normalised = str(TypeAdapter(HttpUrl).validate_python(url))
    with pytest.raises(CallbackRefused, match=reason):
        check_callback_url(normalised, _settings())


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org/hook", "file:///etc/passwd", "gopher://example.org/", "example.org/hook"],
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(CallbackRefused, match="http or https"):
        check_callback_url(url, _settings())


def test_hostname_resolving_to_a_private_address(resolver: dict[str, list[str]]) -> None:
    resolver["hooks.internal.example"] = ["10.20.30.40"]
    with pytest.raises(CallbackRefused, match=r"hooks\.internal\.example \(10\.20\.30\.40\)"):
        check_callback_url("https://hooks.internal.example/in", _settings())


def test_one_private_address_among_public_ones_is_enough(resolver: dict[str, list[str]]) -> None:
    resolver["mixed.example"] = ["93.184.216.34", "192.168.0.7"]
    with pytest.raises(CallbackRefused, match="private"):
        check_callback_url("https://mixed.example/in", _settings())


def test_unresolvable_host_is_refused(resolver: dict[str, list[str]]) -> None:
    with pytest.raises(CallbackRefused, match="does not resolve"):
        check_callback_url("https://no-such-host.invalid/in", _settings())


def test_public_destinations_pass(resolver: dict[str, list[str]]) -> None:
    resolver["hooks.example.org"] = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    check_callback_url("https://hooks.example.org/in?x=1", _settings())
    check_callback_url("http://93.184.216.34:8080/in", _settings())
    check_callback_url("http://[2606:2800:220:1:248:1893:25c8:1946]/in", _settings())


def test_dev_mode_allows_loopback_only(resolver: dict[str, list[str]]) -> None:
    dev = _settings(dev_mode=True)
    check_callback_url("http://127.0.0.1:8000/hook", dev)
    check_callback_url("http://[::1]:8000/hook", dev)
    check_callback_url("http://localhost:8000/hook", dev)
    with pytest.raises(CallbackRefused, match="private"):
        check_callback_url("http://10.0.0.1/hook", dev)


def test_allow_list_lets_its_networks_through() -> None:
    settings = _settings(allow=["10.0.0.0/8", "127.0.0.0/8"])
    check_callback_url("http://10.9.8.7/hook", settings)
    check_callback_url("http://127.0.0.1:9/hook", settings)
    check_callback_url("http://[::ffff:127.0.0.1]/hook", settings)
    with pytest.raises(CallbackRefused, match="private"):
        check_callback_url("http://192.168.1.1/hook", settings)


def test_metadata_is_refused_even_when_its_network_is_allowed() -> None:
    settings = _settings(allow=["169.254.0.0/16", "100.64.0.0/10"])
    check_callback_url("http://169.254.1.1/hook", settings)
    for url in ("http://169.254.169.254/", "http://100.100.100.200/"):
        with pytest.raises(CallbackRefused, match="metadata"):
            check_callback_url(url, settings)


async def test_delivery_time_check_catches_dns_rebinding(resolver: dict[str, list[str]]) -> None:
    resolver["rebind.example"] = ["93.184.216.34"]
    check_callback_url("https://rebind.example/in", _settings())
    first = await resolve_callback("https://rebind.example/in", _settings())
    assert first.addresses == (ipaddress.ip_address("93.184.216.34"),)
    assert (first.host, first.port, first.scheme) == ("rebind.example", 443, "https")
    resolver["rebind.example"] = ["127.0.0.1"]
    with pytest.raises(CallbackRefused, match="loopback"):
        await resolve_callback("https://rebind.example/in", _settings())


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0300.0250.0.1", "192.168.0.1"),
        ("[::1]", "::1"),
        ("example.org", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("08.1.1.1", None),
    ],
)
def test_ip_literal_forms(host: str, address: str | None) -> None:
    parsed = parse_ip_literal(host)
    assert (str(parsed) if parsed else None) == address
