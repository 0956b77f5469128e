"""The webhook schedule and delivery states in real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from mcp.settings import Settings
from mcp.webhooks import single
from mcp.webhooks.deliveries import NewDelivery, scheduled
from mcp.webhooks.secrets import WebhookSecrets
from mcp.webhooks.store import WebhookStore
from schemas import WebhookAttempt, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(params=["bytes", "decoded", "per-slot"])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[WebhookStore]:
    """A store on one Redis, answering bytes or decoded text; `per-slot` takes the steps of a
    Redis Cluster (each script call in one hash slot: `scripts.STATE`, `PLACE`, `ENDED`) instead
    of one script per batch (`single.OneRedis`), so both paths meet every test here."""
    decoded = request.param == "decoded"
    client = aioredis.Redis.from_url(settings.redis.url, decode_responses=decoded)
    store = WebhookStore(client, settings)
    if request.param == "per-slot":
        store._one = None
    yield store
    await client.aclose()


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
async def one_redis(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[WebhookStore]:
    """A store that writes a batch of states in one script (`single.OneRedis`)."""
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
    await store.schedule([_delivery("t", "task.started"), _delivery("t")])
    view = await store.view("t")
    assert view.status == "pending" and view.attempts == 0 and view.next_attempt_at is not None

    [started] = (await store.claim("s", 10, 60, {}, 8)).deliveries
    assert started.type == "task.started"
    await store.delivered(started, "s", 200)
    [d] = (await store.claim("s", 10, 60, {}, 8)).deliveries
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
    assert await store.redis.smembers(store.keys.webhook_inflight("s")) == set()


async def test_a_tasks_webhooks_take_turns_in_order(store: WebhookStore) -> None:
    kinds = ["task.started", "task.output", "task.failed"]
    await store.schedule([_delivery("o", kind) for kind in kinds] + [_delivery("other")])

    # One webhook of a task at a time, even across dispatcher slots; other tasks go on.
    first = (await store.claim("s1", 10, 60, {}, 8)).deliveries
    assert sorted(d.webhook_id for d in first) == ["msg_o_started", "msg_other_succeeded"]
    assert (await store.claim("s2", 10, 60, {}, 8)).deliveries == []

    started = next(d for d in first if d.type == "task.started")
    await store.delivered(started, "s1", 200)
    [output] = (await store.claim("s2", 10, 60, {}, 8)).deliveries
    assert output.type == "task.output"
    assert (await store.claim("s1", 10, 60, {}, 8)).deliveries == []

    # A webhook waiting for its retry does not hold the next one back.
    await store.retry_at(output, "s2", time.time() + 3600, 500, "the receiver answered 500")
    [final] = (await store.claim("s1", 10, 60, {}, 8)).deliveries
    assert final.type == "task.failed"

    # A slot that crashed mid-attempt takes its turn again when it restarts.
    assert await store.recover("s1") == 2
    again = (await store.claim("s1", 10, 60, {}, 8)).deliveries
    assert sorted(d.webhook_id for d in again) == ["msg_o_failed", "msg_other_succeeded"]


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


async def test_a_state_written_but_not_placed_is_placed_when_applied_again(
    store: WebhookStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if a process died between the delivery hash (one key) and its placing.
    [first] = scheduled([_delivery("half")])

    async def killed(pipe: object, record: object) -> None:
        raise ConnectionError("killed before placing")

    with monkeypatch.context() as patch:
        # Two steps on a Redis Cluster; one Redis writes both in one script (`OneRedis`).
        patch.setattr(store, "_one", None)
        patch.setattr(store, "_placing", killed)
        with pytest.raises(ConnectionError):
            await store.apply([first])
    assert (await store.view("half")).status == "none"  # not in the task's index yet
    assert await store.versions([first.webhook_id]) == [0]
    assert (await store.claim("s", 10, 60, {}, 8)).deliveries == []

    assert await store.apply([first]) == 1
    assert await store.versions([first.webhook_id]) == [1]
    [d] = (await store.claim("s", 10, 60, {}, 8)).deliveries
    assert d.webhook_id == first.webhook_id
    assert await store.apply([first]) == 0  # placed: nothing more to do


def _count_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands the asyncio client sends from now on (alone or in a pipeline)."""
    sent: list[str] = []
    alone, queued = aioredis.Redis.execute_command, Pipeline.pipeline_execute_command

    async def execute_command(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return await alone(self, *args, **options)

    def pipeline_execute_command(self: Pipeline, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return queued(self, *args, **options)

    monkeypatch.setattr(aioredis.Redis, "execute_command", execute_command)
    monkeypatch.setattr(Pipeline, "pipeline_execute_command", pipeline_execute_command)
    return sent


async def test_one_redis_applies_a_batch_of_states_in_one_command(
    one_redis: WebhookStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = one_redis
    # One Redis holds every key: a batch of states or attempt outcomes is one script call
    # (a Redis Cluster takes several per state, its keys lying in different slots).
    await store.schedule([_delivery("warm")])  # the first call of a script loads it
    [warm] = (await store.claim("s", 1, 60, {}, 8)).deliveries
    first = WebhookAttempt(attempt=1, at=utcnow(), duration_ms=1.0, status_code=200)
    await store.ended_many("s", [(warm, warm.after(first, delivered=True))])
    sent = _count_commands(monkeypatch)

    assert await store.schedule([_delivery(f"n{i}") for i in range(30)]) == 30
    assert len(sent) == 1
    claimed = (await store.claim("s", 40, 60, {}, 40)).deliveries
    assert len(claimed) == 30
    later = utcnow() + timedelta(hours=1)
    outcomes = []
    for i, d in enumerate(claimed):
        kind = ("delivered", "retry", "gave up")[i % 3]
        code = 200 if kind == "delivered" else 503
        attempt = WebhookAttempt(
            attempt=1,
            at=utcnow(),
            duration_ms=1.0,
            status_code=code,
            next_attempt_at=later if kind == "retry" else None,
        )
        outcomes.append((d, d.after(attempt, delivered=kind == "delivered")))
    sent.clear()
    await store.ended_many("s", outcomes)
    assert len(sent) == 1

    status = {d.webhook_id: (await store.state(d.webhook_id))["status"] for d in claimed}
    assert sorted(status.values()) == ["delivered"] * 10 + ["failed"] * 10 + ["retrying"] * 10
    assert sorted(await store.dead()) == sorted(w for w, s in status.items() if s == "failed")
    assert await store.recover("s") == 0  # every claim dropped
    assert (await store.claim("s", 40, 60, {}, 40)).deliveries == []  # the retries wait
    views = [await store.view(f"n{i}") for i in range(30)]
    assert {v.status for v in views} == {"delivered", "failed", "retrying"}

    # A large batch is cut into calls of `single.CHUNK` states.
    monkeypatch.setattr(single, "CHUNK", 7)
    sent.clear()
    assert await store.schedule([_delivery(f"c{i}") for i in range(30)]) == 30
    assert len(sent) == 5
    assert len((await store.claim("s", 40, 60, {}, 40)).deliveries) == 30


async def test_records_apply_in_any_order_and_twice(store: WebhookStore) -> None:
    [first] = scheduled([_delivery("late")])
    attempt = WebhookAttempt(attempt=1, at=utcnow(), duration_ms=3.0, status_code=410)
    dead = first.after(attempt, delivered=False)
    assert await store.apply([dead, first]) == 1  # the newest of a webhook's records wins
    assert await store.apply([first]) == 0 and await store.apply([dead]) == 0
    assert await store.dead() == [first.webhook_id]
    view = await store.view("late")
    assert (view.status, [a.status_code for a in view.history]) == ("failed", [410])
    assert (await store.claim("s", 10, 60, {}, 8)).deliveries == []


async def test_an_outcome_already_projected_still_gives_the_next_webhook_its_turn(
    store: WebhookStore,
) -> None:
    # The projection may apply an attempt's journaled outcome before the attempt's own writes.
    await store.schedule([_delivery("p", "task.started"), _delivery("p")])
    [started] = (await store.claim("s1", 10, 60, {}, 8)).deliveries
    attempt = WebhookAttempt(attempt=1, at=utcnow(), duration_ms=2.0, status_code=200)
    outcome = started.after(attempt, delivered=True)
    assert await store.apply([outcome]) == 1
    assert (await store.claim("s1", 10, 60, {}, 8)).deliveries == []  # still its turn

    await store.ended(started, "s1", outcome)
    assert (await store.state(started.webhook_id))["status"] == "delivered"
    [final] = (await store.claim("s1", 10, 60, {}, 8)).deliveries
    assert final.type == "task.succeeded"
    assert await store.recover("s1") == 1  # only the claim of the one being attempted


async def test_states_applied_here_are_read_back_only_after_a_rebuild(
    store: WebhookStore,
) -> None:
    [first] = scheduled([_delivery("own")])
    await store.apply([first])
    assert store.applied_here(first.webhook_id, 1) is False  # not journaled: not remembered
    await store.apply([first], own=True)
    assert store.applied_here(first.webhook_id, 1) is True
    assert store.applied_here(first.webhook_id, 1) is False  # read back once: forgotten

    [d] = (await store.claim("s", 10, 60, {}, 8)).deliveries
    attempt = WebhookAttempt(attempt=1, at=utcnow(), duration_ms=2.0, status_code=200)
    await store.ended_many("s", [(d, d.after(attempt, delivered=True))], own=True)
    assert store.applied_here(first.webhook_id, 1) is True  # an older record: nothing to do
    store.forget_own()  # Redis lost state, or may have: read everything back
    assert store.applied_here(first.webhook_id, 2) is False

    # A write that was under way when Redis was found to have lost state is not remembered:
    # it may have gone to the Redis that was lost.
    [again] = scheduled([_delivery("raced")])
    writing = asyncio.create_task(store.apply([again], own=True))
    await asyncio.sleep(0)
    store.forget_own()
    await writing
    assert store.applied_here(again.webhook_id, 1) is False


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


async def test_an_outcome_whose_hash_redis_lost_is_written_with_its_body(
    store: WebhookStore,
) -> None:
    # An attempt's outcome goes to Redis without the body, which the delivery's hash holds from
    # its scheduling on; where Redis lost that hash meanwhile, the outcome is sent again with it.
    await store.schedule([_delivery("lost"), _delivery("kept")])
    claimed = (await store.claim("s", 10, 60, {}, 8)).deliveries
    assert len(claimed) == 2
    lost = next(d for d in claimed if d.task_id == "lost")
    await store.redis.delete(store.keys.delivery(lost.webhook_id))
    attempt = WebhookAttempt(
        attempt=1, at=utcnow(), duration_ms=1.0, status_code=503, next_attempt_at=utcnow()
    )
    await store.ended_many("s", [(d, d.after(attempt, delivered=False)) for d in claimed])
    for d in claimed:
        assert (await store.state(d.webhook_id))["status"] == "retrying"
    assert await store.recover("s") == 0  # both claims dropped
    again = (await store.claim("s", 10, 60, {}, 8)).deliveries
    assert sorted((d.webhook_id, d.body, d.attempts) for d in again) == sorted(
        (d.webhook_id, d.body, 1) for d in claimed
    )
