"""Attempt outcomes are recorded in batches: journaled to Kafka, then applied to Redis. Under
load the batches are spaced by the journal window, so their Kafka transactions are few."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from mcp.kafka import ensure_topics
from mcp.settings import Settings
from mcp.webhooks.deliveries import Delivery, NewDelivery
from mcp.webhooks.journal import WebhookJournal
from mcp.webhooks.recorder import Recorder
from mcp.webhooks.store import WebhookStore
from schemas import WebhookAttempt, WebhookRecord, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _delivered(d: Delivery) -> WebhookRecord:
    attempt = WebhookAttempt(attempt=1, at=utcnow(), duration_ms=1.0, status_code=200)
    return d.after(attempt, delivered=True)


async def test_outcomes_under_load_wait_for_the_window_and_share_a_commit(
    settings: Settings,
) -> None:
    await asyncio.to_thread(ensure_topics, settings, [])
    client = aioredis.Redis.from_url(settings.redis.url)
    store = WebhookStore(client, settings)
    journal = WebhookJournal(settings, "r")
    journal.start()
    recorder = Recorder(journal, store, "r", window_s=2.0)
    try:
        new = [
            NewDelivery(f"msg_r{i}", f"r{i}", "default", "task.succeeded", "http://a/", b"{}")
            for i in range(7)
        ]
        await store.schedule(new)
        claimed = (await store.claim("r", 10, 60, {}, 8)).deliveries
        assert len(claimed) == 7

        await recorder.record(claimed[0], _delivered(claimed[0]))  # alone: at once
        assert recorder.batches == 1
        pair = claimed[1:3]  # ended together: one batch, which means load
        await asyncio.gather(*(recorder.record(d, _delivered(d)) for d in pair))
        assert recorder.batches == 2
        # Under load the next outcomes wait for the window, however they trickle in.
        waiting = []
        for d in claimed[3:]:
            waiting.append(asyncio.create_task(recorder.record(d, _delivered(d))))
            await asyncio.sleep(0.01)
        assert recorder.batches == 2 and not any(t.done() for t in waiting)
        await asyncio.gather(*waiting)
        assert recorder.batches == 3

        producer = journal._producer
        assert producer is not None and (producer.transactions, producer.records) == (3, 7)
        for d in claimed:
            assert (await store.state(d.webhook_id))["status"] == "delivered"
    finally:
        await asyncio.to_thread(journal.close)
        await client.aclose()
