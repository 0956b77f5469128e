"""The delivery pool's waits: woken by what can make deliveries due, idle otherwise."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from mcp.settings import Settings
from mcp.webhooks.journal import WebhookJournal
from mcp.webhooks.policy import RetryPolicy
from mcp.webhooks.pool import DeliveryPool
from mcp.webhooks.secrets import WebhookSecrets
from mcp.webhooks.sender import WebhookSender
from mcp.webhooks.store import WebhookStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_a_wake_while_the_state_is_rebuilt_waits_and_a_stop_ends_the_pool(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = settings.webhooks.model_copy(update={"journal": False})
    settings = settings.model_copy(update={"webhooks": hooks})
    client = aioredis.Redis.from_url(settings.redis.url)
    store = WebhookStore(client, settings)
    sender = WebhookSender(settings, WebhookSecrets(client, settings))
    ready = asyncio.Event()  # Redis's webhook state is being rebuilt
    pool = DeliveryPool(
        settings, store, sender, RetryPolicy([0.1], 0), "p", WebhookJournal(settings, "p"), ready
    )
    waits = 0
    wait = pool._wait

    async def counted(*args: object) -> None:
        nonlocal waits
        waits += 1
        await wait(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pool, "_wait", counted)
    stop = asyncio.Event()
    running = asyncio.create_task(pool.run(stop))
    try:
        pool.wake()  # as when deliveries were scheduled: nothing can be claimed yet
        await asyncio.sleep(0.3)
        assert waits <= 3  # one wait per wake or idle poll (1 s), not a loop that spins
        stop.set()
        await asyncio.wait_for(running, 5)  # the stop wakes the waiting pool
    finally:
        running.cancel()
        await sender.aclose()
        await client.aclose()
