"""What the API committer's histogram of commit times measures.

A stand-in for confluent_kafka's Producer records the calls a lane makes and refuses a record
as librdkafka does when it is too large."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from mcp.producer import COMMIT_SECONDS, TaskProducer, _Pending
from mcp.records import Record
from mcp.settings import Settings


class _Calls:
    """What a lane asks of its producer; `produce` refuses the values in `refuse`."""

    def __init__(self, refuse: tuple[bytes, ...] = ()) -> None:
        self.calls: list[str] = []
        self.refuse = refuse

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None, **_: Any) -> None:
        if value in self.refuse:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
        self.calls.append("produce")

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    found = asyncio.new_event_loop()
    yield found
    found.close()


def _one_lane(calls: _Calls) -> TaskProducer:
    producer = TaskProducer(Settings(), "lanes")
    producer._lanes[0].producer = calls  # type: ignore[assignment]
    return producer


def _pending(loop: asyncio.AbstractEventLoop, value: bytes = b"v") -> _Pending:
    return _Pending([Record("t", b"k", value)], None, loop, loop.create_future())


def test_the_commit_histogram_leaves_out_answering_refused_submissions(
    monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop
) -> None:
    """`autoglm_group_commit_seconds` is the transaction (begin, produce, commit); telling a
    refused submission so comes after it."""
    clock = [100.0]
    monkeypatch.setattr("mcp.producer.time.perf_counter", lambda: clock[0])
    refusals: list[Any] = []

    def settle(batch: list[_Pending], error: BaseException | None) -> None:
        if error is not None:
            refusals.append(error)
            clock[0] += 5.0  # answering the refused submission takes its time

    monkeypatch.setattr("mcp.producer._settle", settle)
    calls = _Calls(refuse=(b"too large",))
    producer = _one_lane(calls)
    before = COMMIT_SECONDS._sum.get()
    producer._commit(producer._lanes[0], [_pending(loop), _pending(loop, b"too large")])
    assert len(refusals) == 1
    assert calls.calls == ["begin", "produce", "commit"]
    assert COMMIT_SECONDS._sum.get() - before < 1.0
    assert time.perf_counter() == 105.0
