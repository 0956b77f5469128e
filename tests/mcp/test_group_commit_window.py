"""When the API's committer waits for company (the group-commit window) and when it does not."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from mcp.producer import _EMPTY, TaskProducer, _Pending
from mcp.records import Record
from mcp.settings import Settings


def _pending(loop: asyncio.AbstractEventLoop) -> _Pending:
    return _Pending([Record("t", b"k", b"v")], None, loop, loop.create_future())


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The loop the submissions' futures belong to (never run)."""
    found = asyncio.new_event_loop()
    yield found
    found.close()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> TaskProducer:
    """A producer whose group-commit window returns at once."""
    monkeypatch.setattr("mcp.producer.time.sleep", lambda _s: None)
    return TaskProducer(Settings(), "in-flight")


@pytest.mark.parametrize("wait_alone", [False, True])
def test_window_only_under_load(
    monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop, wait_alone: bool
) -> None:
    settings = Settings()
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"group_commit_wait_alone": wait_alone})}
    )
    producer = TaskProducer(settings, "window")
    waits: list[float] = []
    monkeypatch.setattr("mcp.producer.time.sleep", waits.append)
    window = settings.kafka.group_commit_max_ms / 1000
    # Idle: a lone submission is committed at once (unless told to wait anyway).
    lone = _pending(loop)
    producer._queue.put(lone)
    assert producer._gather() == [lone]
    assert waits == ([window] if wait_alone else [])
    # Two waiting together: no window needed, they are a batch already.
    waits.clear()
    pair = [_pending(loop), _pending(loop)]
    for p in pair:
        producer._queue.put(p)
    assert producer._gather() == pair
    assert waits == []
    # Alone right after a shared transaction: under load, the window pays.
    after = _pending(loop)
    producer._queue.put(after)
    assert producer._gather() == [after]
    assert waits == [window]
    # That transaction was alone: the next lone one goes at once again.
    waits.clear()
    again = _pending(loop)
    producer._queue.put(again)
    assert producer._gather() == [again]
    assert waits == ([window] if wait_alone else [])


class _CommitFinishes:
    """Stands for `TaskProducer._commit_done`: the transaction in flight commits while the
    gathering lane waits, and `arrivals` come in meanwhile."""

    def __init__(self, producer: TaskProducer, arrivals: list[_Pending]) -> None:
        self.producer = producer
        self.arrivals = arrivals
        self.waits = 0
        # Submissions left in the queue when the lane began to wait.
        self.queued_at_wait: list[int] = []

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def wait_for(self, predicate: object, timeout: float) -> bool:
        self.waits += 1
        self.queued_at_wait.append(self.producer._queue.pending())
        for pending in self.arrivals:
            self.producer._queue.put(pending)
        self.producer._committing = 0
        assert callable(predicate)
        return bool(predicate())


def test_under_load_the_next_transaction_gathers_until_the_one_in_flight_commits(
    monkeypatch: pytest.MonkeyPatch,
    producer: TaskProducer,
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Under load (the latest transaction was shared), another lane committing: wait for it,
    # then take everything that came meanwhile in one transaction.
    producer._last_batch = 2
    producer._committing = 1
    first, *meanwhile = [_pending(loop) for _ in range(3)]
    finishes = _CommitFinishes(producer, meanwhile)
    monkeypatch.setattr(producer, "_commit_done", finishes)
    producer._queue.put(first)
    assert producer._gather() == [first, *meanwhile]
    assert finishes.waits == 1
    # Without load a lone submission does not wait for the transaction in flight.
    producer._last_batch = 1
    producer._committing = 1
    lone = _pending(loop)
    finishes.arrivals = []
    producer._queue.put(lone)
    assert producer._gather() == [lone]
    assert finishes.waits == 1


def test_under_load_the_lane_waits_for_the_commit_before_it_takes_from_the_queue(
    monkeypatch: pytest.MonkeyPatch,
    producer: TaskProducer,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The waiting lane sleeps on the committing lane's signal, not on the queue: the event
    loop's puts meanwhile wake no thread (a wake-up per transaction, on the loop, before)."""
    producer._last_batch = 2
    producer._committing = 1
    first, later = _pending(loop), _pending(loop)
    finishes = _CommitFinishes(producer, [later])
    monkeypatch.setattr(producer, "_commit_done", finishes)
    producer._queue.put(first)
    assert producer._gather() == [first, later]
    assert finishes.queued_at_wait == [1]  # nothing taken from the queue before the wait
    # Load that shows only once the lane has its first submission: it waits then.
    producer._last_batch = 1
    producer._committing = 1
    one, two, three = _pending(loop), _pending(loop), _pending(loop)
    finishes.arrivals = [three]
    producer._queue.put(one)
    producer._queue.put(two)
    assert producer._gather() == [one, two, three]
    assert finishes.queued_at_wait == [1, 1]


class _Lane:
    """What a lane's stand-in producer is asked, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None, **_: object) -> None:
        self.calls.append("produce")

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")


def test_under_load_the_lane_opens_its_transaction_with_its_first_submission(
    monkeypatch: pytest.MonkeyPatch,
    producer: TaskProducer,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """While another lane's transaction commits, the gathering lane begins its own with the
    first submission (Kafka registers the partitions meanwhile), waits for that commit with the
    rest left in the queue, then adds them and commits once."""
    lane = producer._lanes[0]
    calls = _Lane()
    lane.producer = calls  # type: ignore[assignment]
    producer._last_batch = 2
    producer._committing = 1
    first, second, later = _pending(loop), _pending(loop), _pending(loop)
    finishes = _CommitFinishes(producer, [later])
    commit_finishes = finishes.wait_for

    def wait_for(predicate: object, timeout: float) -> bool:
        calls.calls.append("wait")
        return commit_finishes(predicate, timeout)

    monkeypatch.setattr(producer, "_commit_done", finishes)
    monkeypatch.setattr(finishes, "wait_for", wait_for)
    producer._queue.put(first)
    producer._queue.put(second)
    batch = producer._gather(lane)
    assert batch == [first, second, later]
    assert finishes.queued_at_wait == [1]  # only the first was taken before the wait
    assert calls.calls == ["begin", "produce", "wait"]
    producer._commit(lane, batch)
    assert calls.calls == ["begin", "produce", "wait", "produce", "produce", "commit"]
    assert lane.opened is None


def test_puts_wake_only_a_consumer_that_sleeps(loop: asyncio.AbstractEventLoop) -> None:
    """A put sets the wake-up event only for a consumer waiting on it: one that found the queue
    empty without waiting (the end of a gather) costs the next put nothing."""
    producer = TaskProducer(Settings(), "handoff")
    queue = producer._queue
    assert queue.get(0) is _EMPTY
    queue.put(_pending(loop))
    assert not queue._wakeup.is_set()
    assert queue.get(0) is not _EMPTY
    taken: list[object] = []
    consumer = threading.Thread(target=lambda: taken.append(queue.get(None)))
    consumer.start()
    while not queue._sleepers:
        time.sleep(0.001)
    item = _pending(loop)
    queue.put(item)
    consumer.join(5)
    assert taken == [item]
