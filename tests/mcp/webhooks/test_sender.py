"""One attempt: pinned connections, no redirects, outcome classes, retry timing, signatures."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from mcp.settings import Settings
from mcp.webhooks.deliveries import Delivery
from mcp.webhooks.policy import RetryPolicy, parse_retry_after
from mcp.webhooks.secrets import WebhookSecrets
from mcp.webhooks.sender import WebhookSender, classify
from mcp.webhooks.signing import webhook_headers
from mcp.webhooks.ssrf import CallbackTarget, parse_ip_literal
from mcp.webhooks.transport import pinned, pinned_session
from tests.mcp.webhooks.conftest import SECRET, SECRETS, Receiver, Reply, verify

HOST = "hooks.example.test"


@pytest.fixture
def resolve_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make HOST resolve to one address (the only name these tests resolve)."""
    answer: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == HOST, f"unexpected resolution of {host!r}"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer[0], port))]

    def answer_with(address: str) -> None:
        answer[:] = [address]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return answer_with


def _settings(**webhooks: Any) -> Settings:
    return Settings.model_validate(
        {"dev_mode": True, "webhooks": {"secrets": SECRETS, "timeout_s": 5, **webhooks}}
    )


def _delivery(url: str) -> Delivery:
    return Delivery("msg_t_succeeded", "t", "default", "task.succeeded", url, b'{"a":1}', 0, 0, "")


async def _send(settings: Settings, url: str, transport: Any = None) -> Any:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # never used: secrets are set
    sender = WebhookSender(settings, WebhookSecrets(client, settings), transport)
    try:
        return await sender.send(_delivery(url))
    finally:
        await sender.aclose()
        await client.aclose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def test_connects_to_the_checked_address_and_keeps_the_host_header(
    receiver: Receiver, resolve_to: Callable[[str], None]
) -> None:
    resolve_to("127.0.0.1")
    port = receiver.server.server_address[1]
    attempt = asyncio.run(_send(_settings(), f"http://{HOST}:{port}/in"))
    assert attempt.outcome == "delivered" and attempt.status_code == 200
    [received] = receiver.all()
    assert received.headers["host"] == f"{HOST}:{port}"
    verify(received)


def test_rebinding_to_a_private_address_is_stopped_before_connecting(
    receiver: Receiver, resolve_to: Callable[[str], None]
) -> None:
    resolve_to("10.0.0.7")
    port = receiver.server.server_address[1]
    attempt = asyncio.run(_send(_settings(), f"http://{HOST}:{port}/in"))
    assert attempt.outcome == "stop" and "private" in attempt.error
    assert receiver.all() == []


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    url = receiver.script("/moved", Reply(302, {"Location": "/elsewhere"}))
    attempt = asyncio.run(_send(_settings(), url))
    assert (attempt.outcome, attempt.status_code) == ("retry", 302)
    assert [r.path for r in receiver.all()] == ["/moved"]


def test_a_hanging_receiver_times_out(receiver: Receiver) -> None:
    url = receiver.script("/hang", Reply(hang_s=10))
    attempt = asyncio.run(_send(_settings(timeout_s=0.5), url))
    assert attempt.outcome == "retry" and "0.5" in attempt.error


def test_unpinned_or_foreign_connections_are_refused(receiver: Receiver) -> None:
    port = receiver.server.server_address[1]
    loopback = parse_ip_literal("127.0.0.1")
    assert loopback is not None

    async def run() -> None:
        async with pinned_session(4, 4) as session:
            with pytest.raises(aiohttp.ClientConnectorError, match="not checked"):
                await session.post("http://127.0.0.1:9/in")
            target = CallbackTarget("http://a.test/", "http", "a.test", 80, ())
            with pinned(target), pytest.raises(aiohttp.ClientConnectorError, match="not checked"):
                await session.post("http://b.test/in")
            # An IP-literal URL (never resolved) is held to the checked addresses as well.
            elsewhere = CallbackTarget("http://a.test/", "http", "a.test", port, (loopback,))
            with (
                pinned(elsewhere),
                pytest.raises(aiohttp.ClientConnectorError, match="not checked"),
            ):
                await session.post(f"http://127.0.0.2:{port}/in")
            # The checked address itself is reached.
            checked = CallbackTarget("", "http", "127.0.0.1", port, (loopback,))
            with pinned(checked):
                async with session.post(f"http://127.0.0.1:{port}/in", data=b"{}") as response:
                    assert response.status == 200
        assert [r.path for r in receiver.all()] == ["/in"]

    asyncio.run(run())


def test_https_verifies_the_callback_hostname_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"),
                *("-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        pytest.skip("openssl is not installed")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    trust = ssl.create_default_context(cafile=str(cert))
    address = parse_ip_literal("127.0.0.1")
    assert address is not None

    async def post(host: str) -> int:
        async with pinned_session(2, 2, ssl_context=trust) as session:
            target = CallbackTarget(f"https://{host}:{port}/", "https", host, port, (address,))
            with pinned(target):
                async with session.post(f"https://{host}:{port}/in", data=b"{}") as response:
                    return response.status

    try:
        assert asyncio.run(post(HOST)) == 204
        with pytest.raises(aiohttp.ClientConnectorError, match=r"certificate|hostname"):
            asyncio.run(post("other.example.test"))
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "retry_after", "outcome", "wait"),
    [
        (200, None, "delivered", None),
        (204, None, "delivered", None),
        (410, None, "stop", None),
        (429, "7", "retry", 7.0),
        (503, "3", "retry", 3.0),
        (500, "7", "retry", None),
        (301, None, "retry", None),
        (404, None, "retry", None),
    ],
)
def test_classification(
    status: int, retry_after: str | None, outcome: str, wait: float | None
) -> None:
    attempt = classify(status, retry_after, now=1000.0)
    assert (attempt.outcome, attempt.status_code, attempt.retry_after) == (outcome, status, wait)


def test_retry_after_as_http_date() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=90.0) == 10.0
    assert parse_retry_after("soon", now=0.0) is None


def test_retry_policy_follows_the_schedule_with_jitter_and_retry_after() -> None:
    policy = RetryPolicy([0, 5, 300], jitter=0.1, uniform=lambda low, high: high)
    assert policy.next_attempt_at(0, 1000.0, None) == pytest.approx(1005.5)
    assert policy.next_attempt_at(1, 1000.0, None) == pytest.approx(1330.0)
    assert policy.next_attempt_at(2, 1000.0, None) is None
    assert policy.next_attempt_at(0, 1000.0, 60.0) == pytest.approx(1060.0)


def test_signatures_verify_with_the_reference_implementation() -> None:
    from standardwebhooks.webhooks import Webhook

    body = b'{"type":"task.succeeded"}'
    headers = webhook_headers(SECRETS["rotating"], "msg_x_succeeded", body)
    for secret in SECRETS["rotating"]:
        assert Webhook(secret).verify(body, headers) == {"type": "task.succeeded"}
    assert SECRET in SECRETS["rotating"]
