"""The webhook schedule and delivery states in real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from mcp.settings import Settings
from mcp.webhook_secrets import WebhookSecrets
from mcp.webhook_store import NewDelivery, WebhookStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[WebhookStore]:
    client = aioredis.Redis.from_url(settings.redis.url, decode_responses=request.param)
    yield WebhookStore(client, settings)
    await client.aclose()


def _delivery(
    task_id: str, kind: str = "task.succeeded", url: str = "http://127.0.0.1:9/hook"
) -> NewDelivery:
    return NewDelivery(
        webhook_id=f"msg_{task_id}_{kind.removeprefix('task.')}",
        task_id=task_id,
        project="default",
        type=kind,
        url=url,
        body=b'{"type":"%s","data":{"snow":"\xe2\x9d\x84"}}' % kind.encode(),
    )


async def test_scheduling_is_idempotent_and_claims_are_exclusive(store: WebhookStore) -> None:
    first, second = _delivery("a"), _delivery("b")
    assert await store.schedule([first, second]) == 2
    assert await store.schedule([first]) == 0
    assert await store.schedule([_delivery("later")], due=time.time() + 3600) == 1

    claim = await store.claim("s1", 10, 60, {}, 8)
    claimed = claim.deliveries
    assert sorted(d.webhook_id for d in claimed) == [first.webhook_id, second.webhook_id]
    assert {d.body for d in claimed} == {first.body, second.body}
    assert claim.next_due is not None and claim.next_due > time.time() + 30  # the lease
    assert (await store.claim("s2", 10, 60, {}, 8)).deliveries == []

    assert await store.recover("s1") == 2
    again = (await store.claim("s2", 1, 60, {}, 8)).deliveries
    assert len(again) == 1 and again[0].attempts == 0 and again[0].step == 0


async def test_claims_respect_free_slots_per_destination(store: WebhookStore) -> None:
    a, b = "http://a.example/hook", "https://b.example:8443/hook"
    await store.schedule([_delivery(f"a{i}", url=a) for i in range(5)])
    await store.schedule([_delivery(f"b{i}", url=b) for i in range(2)])

    busy = {"a.example:80": 2, "b.example:8443": 0}
    claim = await store.claim("s", 10, 60, busy, per_destination=2)
    assert [d.destination for d in claim.deliveries] == ["b.example:8443"] * 2
    assert claim.next_due is None

    claim = await store.claim("s", 10, 60, {"a.example:80": 1}, per_destination=2)
    assert [d.destination for d in claim.deliveries] == ["a.example:80"]
    claim = await store.claim("s", 2, 60, {}, per_destination=8)
    assert len(claim.deliveries) == 2
    assert claim.next_due is not None and claim.next_due <= time.time()


async def test_views_follow_the_delivery(store: WebhookStore) -> None:
    assert (await store.view("none")).status == "none"
    await store.schedule([_delivery("t"), _delivery("t", "task.started")])
    view = await store.view("t")
    assert view.status == "pending" and view.attempts == 0 and view.next_attempt_at is not None

    claimed = (await store.claim("s", 10, 60, {}, 8)).deliveries
    [d, _] = sorted(claimed, key=lambda d: d.type != "task.succeeded")
    at = time.time() + 30
    await store.retry_at(d, "s", at, 503, "the receiver answered 503")
    view = await store.view("t")
    assert (view.status, view.attempts, view.last_status_code) == ("retrying", 1, 503)
    assert view.next_attempt_at is not None and abs(view.next_attempt_at.timestamp() - at) < 0.01

    assert (await store.claim("s", 10, 60, {}, 8)).deliveries == []
    await store.redeliver("t")
    [d] = (await store.claim("s", 10, 60, {}, 8)).deliveries
    assert (d.attempts, d.step, d.status) == (1, 1, "retrying")
    await store.delivered(d, "s", 204)
    view = await store.view("t")
    assert (view.status, view.attempts, view.last_status_code) == ("delivered", 2, 204)
    assert view.next_attempt_at is None
    inflight = await store.redis.smembers(store.keys.webhook_inflight("s"))
    assert {m if isinstance(m, str) else m.decode() for m in inflight} == {"msg_t_started"}


async def test_dead_deliveries_can_be_redelivered(store: WebhookStore) -> None:
    await store.schedule([_delivery("d")])
    [d] = (await store.claim("s", 10, 60, {}, 8)).deliveries
    await store.give_up(d, "s", 410, "the receiver answered 410 Gone")
    view = await store.view("d")
    assert (view.status, view.attempts, view.last_status_code) == ("failed", 1, 410)
    assert await store.dead() == [d.webhook_id]
    assert (await store.claim("s", 10, 60, {}, 8)).deliveries == []

    assert await store.redeliver("d") is True
    assert await store.dead() == []
    assert (await store.view("d")).status == "pending"
    [again] = (await store.claim("s", 10, 60, {}, 8)).deliveries
    assert (again.webhook_id, again.step, again.attempts) == (d.webhook_id, 0, 1)
    assert await store.redeliver("unknown-task") is False


async def test_generated_secret_is_stable_per_project(settings: Settings) -> None:
    client = aioredis.Redis.from_url(settings.redis.url)
    try:
        one = await WebhookSecrets(client, settings).get("p1")
        two = await WebhookSecrets(client, settings).get("p1")
        other = await WebhookSecrets(client, settings).get("p2")
        assert one == two and one != other and one[0].startswith("whsec_")
        configured = settings.model_copy(
            update={"webhooks": settings.webhooks.model_copy(update={"secrets": {"p1": ["x"]}})}
        )
        assert await WebhookSecrets(client, configured).get("p1") == ["x"]
    finally:
        await client.aclose()
