"""Polls' reads gathered per turn of the event loop (`mcp.poll_reads`), against a real Redis:
the reads of one turn share one pipeline and each gets its own task; a cancelled or failed
leader leaves its followers to read on their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mcp.names import Keys
from mcp.poll_reads import PollReads, Raw
from mcp.redis_client import connect
from mcp.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


class Counted(PollReads):
    """Counts the pipelines sent and can hold the next one, or fail it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.batches: list[list[str]] = []
        self.hold: asyncio.Event | None = None
        self.fail_next = False

    async def _pipeline(self, task_ids: list[str]) -> list[Raw]:
        self.batches.append(task_ids)
        if self.hold is not None:
            hold, self.hold = self.hold, None
            await hold.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis went away")
        return await super()._pipeline(task_ids)


@pytest.fixture
async def reads(settings: Settings) -> AsyncIterator[Counted]:
    client = connect(settings)
    keys = Keys.of(settings)
    for n in range(5):
        await client.hset(keys.task(f"t{n}"), mapping={"task_id": f"t{n}", "status": "queued"})
    await client.hset(keys.task_webhooks("t1"), mapping={"completed": "wh-1"})
    yield Counted(client, keys)
    await client.aclose()


def _task_id(raw: Raw) -> str:
    return raw[0][b"task_id"].decode()


async def test_the_reads_of_one_turn_share_one_pipeline_and_each_gets_its_task(
    reads: Counted,
) -> None:
    answers = await asyncio.gather(*(reads.read(f"t{n}") for n in range(5)))
    assert reads.batches == [["t0", "t1", "t2", "t3", "t4"]]
    assert [_task_id(a) for a in answers] == ["t0", "t1", "t2", "t3", "t4"]
    assert answers[1][1] == {b"completed": b"wh-1"}
    assert answers[0][1] == {}


async def test_a_missing_task_reads_as_empty(reads: Counted) -> None:
    assert await reads.read("nowhere") == ({}, {})


async def test_reads_of_later_turns_go_in_pipelines_of_their_own(reads: Counted) -> None:
    assert _task_id(await reads.read("t0")) == "t0"
    assert _task_id(await reads.read("t1")) == "t1"
    assert reads.batches == [["t0"], ["t1"]]


async def test_a_cancelled_leader_leaves_its_followers_to_read_alone(reads: Counted) -> None:
    reads.hold = asyncio.Event()  # the leader's pipeline waits until cancelled
    leader = asyncio.ensure_future(reads.read("t0"))
    followers = [asyncio.ensure_future(reads.read(f"t{n}")) for n in (1, 2)]
    while not reads.batches:
        await asyncio.sleep(0)
    leader.cancel()
    answers = await asyncio.gather(*followers)
    assert [_task_id(a) for a in answers] == ["t1", "t2"]
    assert leader.cancelled()
    assert reads.batches[0] == ["t0", "t1", "t2"]
    assert sorted(b[0] for b in reads.batches[1:]) == ["t1", "t2"]


async def test_a_failed_pipeline_fails_the_leader_and_its_followers_read_alone(
    reads: Counted,
) -> None:
    reads.fail_next = True
    leader, *followers = await asyncio.gather(
        *(reads.read(f"t{n}") for n in range(3)), return_exceptions=True
    )
    assert isinstance(leader, ConnectionError)
    assert [_task_id(a) for a in followers if not isinstance(a, BaseException)] == ["t1", "t2"]
