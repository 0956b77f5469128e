"""`GET /v1/webhooks/secret` and `POST /v1/webhooks/secret/rotate`: the old secret keeps signing
for the overlap; the secrets are a Kafka fact, so Redis loses nothing."""

from __future__ import annotations

import time

import pytest
import redis
from autoglm_client import Client, verify
from autoglm_client.errors import APIError, WebhookVerificationError

from mcp.names import Keys
from mcp.webhooks.secrets import CACHE_S, replay_secrets
from tests.harness import Platform, wait_for
from tests.mcp.webhooks.conftest import SECRET, Receiver

pytestmark = pytest.mark.integration


def test_read_rotate_sign_and_survive_redis(platform: Platform) -> None:
    receiver = Receiver()
    platform.api()
    platform.worker("echo", "0")
    platform.dispatcher()
    try:
        with Client(platform.url) as client:
            first = client.webhook_secret()
            assert first.current.startswith("whsec_") and len(first.secrets) == 1
            assert client.webhook_secret().current == first.current  # made once

            headers, body = deliver(client, receiver, 1)
            assert verify(first.current, headers, body).data.result == {"echo": {"n": 1}}

            second = client.rotate_webhook_secret(overlap_s=600)
            assert second.current != first.current
            assert [s.secret for s in second.secrets] == [second.current, first.current]
            assert second.secrets[1].expires_at is not None
            time.sleep(CACHE_S + 0.5)  # the dispatcher's cached read of the secrets expires
            headers, body = deliver(client, receiver, 2)  # both sign while they overlap
            assert verify(second.current, headers, body) and verify(first.current, headers, body)

            third = client.rotate_webhook_secret(overlap_s=0)
            assert [s.secret for s in third.secrets] == [third.current]

            # Redis is a projection: lose the key, replay, the same secret comes back.
            store = redis.Redis.from_url(platform.settings.redis.url)
            key = Keys.of(platform.settings).webhook_secret("default")
            store.delete(key)
            assert replay_secrets(platform.settings, store) == 1
            store.close()
        time.sleep(CACHE_S + 0.5)
        restarted = platform.variant()
        restarted.api()
        with Client(restarted.url) as client:
            assert client.webhook_secret().current == third.current
            headers, body = deliver(client, receiver, 3)
            verify(third.current, headers, body)
            with pytest.raises(WebhookVerificationError):
                verify(second.current, headers, body)
    finally:
        receiver.close()


def deliver(client: Client, receiver: Receiver, n: int) -> tuple[dict[str, str], bytes]:
    client.submit("echo", payload={"n": n}, callback_url=receiver.url(f"/{n}"))
    wait_for(lambda: receiver.on(f"/{n}"), 60, f"webhook {n}")
    hit = receiver.on(f"/{n}")[0]
    return hit.headers, hit.body


def test_configured_secrets_are_read_not_rotated(platform: Platform) -> None:
    configured = platform.variant(webhooks={"secrets": {"default": [SECRET]}})
    configured.api()
    with Client(configured.url) as client:
        view = client.webhook_secret()
        assert view.current == SECRET and view.model_extra == {"source": "configuration"}
        with pytest.raises(APIError) as refused:
            client.rotate_webhook_secret()
        assert refused.value.status_code == 409 and refused.value.code == "secrets_configured"
