"""The admission bound's slots: a submission that finds them all taken waits for one, first come
first served, a bounded time and behind a bounded crowd; a slot freed goes to the oldest waiter."""

from __future__ import annotations

import asyncio

from api.admission import AdaptiveLimit, RetryAfter

TARGET_S = 0.1


def full(slots: int) -> AdaptiveLimit:
    limit = AdaptiveLimit(slots, slots, TARGET_S)
    assert all(limit.acquire() for _ in range(slots))
    assert not limit.acquire()
    return limit


def test_a_waiter_without_a_freed_slot_is_refused_after_its_wait() -> None:
    limit = full(2)
    assert asyncio.run(limit.wait(0.02)) is False
    assert limit.in_flight == 2
    assert asyncio.run(limit.wait(0)) is False  # no wait configured: refused at once


def test_a_freed_slot_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    async def scenario() -> tuple[list[bool], bool, int]:
        limit = full(2)
        first = asyncio.create_task(limit.wait(5))
        second = asyncio.create_task(limit.wait(5))
        await asyncio.sleep(0)
        limit.release(0.01)
        newcomer = limit.acquire()  # others wait: no jumping the queue
        await asyncio.sleep(0)
        done = [first.done() and first.result(), second.done()]
        limit.release(0.01)
        done.append(await second)
        return done, newcomer, limit.in_flight

    (first, second_early, second), newcomer, in_flight = asyncio.run(scenario())
    assert first is True and second_early is False and second is True
    assert newcomer is False
    assert in_flight == 2  # each slot passed on, none lost or added


def test_no_more_wait_than_there_are_slots() -> None:
    async def scenario() -> tuple[bool, bool]:
        limit = full(1)
        waiting = asyncio.create_task(limit.wait(5))
        await asyncio.sleep(0)
        crowd = await limit.wait(5)  # one slot, one waiter already: refused at once
        limit.release(0.01)
        return crowd, await waiting

    assert asyncio.run(scenario()) == (False, True)


def test_a_waiter_cancelled_with_its_slot_passes_the_slot_on() -> None:
    async def scenario() -> tuple[bool, int]:
        limit = full(2)
        first = asyncio.create_task(limit.wait(5))
        second = asyncio.create_task(limit.wait(0.5))
        await asyncio.sleep(0)
        limit.release(0.01)  # the slot goes to `first`...
        first.cancel()  # ...whose client left before it resumed
        got = await second
        return got, limit.in_flight

    assert asyncio.run(scenario()) == (True, 2)


def test_a_released_slot_without_waiters_returns_to_the_pool() -> None:
    limit = full(1)
    limit.release(0.01)
    assert limit.in_flight == 0
    assert limit.acquire()


def test_retry_after_grows_while_refusals_outnumber_the_budget_and_shrinks_after() -> None:
    retry = RetryAfter(1, 3, budget=0.1)
    now = 100.0
    assert retry.refuse(now) == 1  # the first window opens
    told = []
    for _ in range(4):  # each window: 100 accepted, 50 refused (budget: 10)
        for _ in range(100):
            retry.accept(now)
        told.append(max(retry.refuse(now) for _ in range(50)))
        now += RetryAfter.WINDOW_S
    assert told == [1, 2, 3, 3]  # a second more per window, up to the maximum
    for _ in range(100):  # a window within budget: 100 accepted, 3 refused
        retry.accept(now)
    assert retry.refuse(now) == 3
    now += RetryAfter.WINDOW_S
    assert retry.refuse(now) == 2  # under half the budget: one second less
    assert retry.refuse(now + 10 * RetryAfter.WINDOW_S) == 1  # idle since: back to the minimum


def test_retry_after_stays_at_its_minimum_while_refusals_are_few() -> None:
    retry = RetryAfter(1, 10, budget=0.1)
    now = 0.0
    for _ in range(5):
        for _ in range(100):
            retry.accept(now)
        assert retry.refuse(now) == 1
        now += RetryAfter.WINDOW_S
