"""One request never fails another: a record Kafka would refuse costs only its own request.

Through the real API (group commit) and a real worker (result transactions), against real Kafka.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from mcp.names import Topics
from schemas import AsyncTask, TaskResult, loads
from tests.harness import Platform, scan, submit, wait_for

pytestmark = pytest.mark.integration

ECHO = {"model": "echo", "action": "generate"}
SMALL = 200
ROUNDS = 5


async def _round(url: str, n: int) -> tuple[list[httpx.Response], httpx.Response]:
    """SMALL concurrent small submissions with one oversize one among them."""
    # The body stays under the 1 MiB body limit; its Kafka record does not fit 1,000,000 bytes.
    oversize = orjson.dumps({**ECHO, "payload": {"prompt": "x" * 1_010_000}})
    assert len(oversize) < 1_048_576
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=SMALL + 1)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        def small(i: int) -> object:
            body = orjson.dumps({**ECHO, "payload": {"round": n, "i": i}})
            return client.post("/v1/tasks", content=body, headers=headers)

        calls = [small(i) for i in range(SMALL)]
        calls.insert(SMALL // 2, client.post("/v1/tasks", content=oversize, headers=headers))
        answers: list[httpx.Response] = await asyncio.gather(*calls)  # type: ignore[call-overload]
    big = answers.pop(SMALL // 2)
    return answers, big


def test_oversize_submission_among_concurrent_ones(platform: Platform) -> None:
    # All 201 at once: admission control, which would refuse some of them, is not tested here.
    # The claim check would store the large payload as a file and keep its record small: this
    # test needs a record Kafka refuses, so payloads stay inline here.
    platform.api(AUTOGLM_SERVER__ADMISSION_CONTROL="false", AUTOGLM_BLOBS__OFFLOAD_BYTES=str(2**31))
    accepted: list[str] = []
    for n in range(ROUNDS):
        answers, big = asyncio.run(_round(platform.url, n))
        assert [a.status_code for a in answers] == [202] * SMALL, {
            a.status_code: a.text for a in answers if a.status_code != 202
        }
        accepted += [a.json()["task_id"] for a in answers]
        assert big.status_code == 413, big.text
        error = big.json()["error"]
        assert error["code"] == "record_too_large"
        assert error["details"]["max_record_bytes"] == 1_000_000
        assert error["details"]["record_bytes"] > 1_000_000

    topics = Topics.of(platform.settings)
    tasks = [
        loads(AsyncTask, value) for _, value, _ in scan(platform.settings, topics.tasks("echo"))
    ]
    assert Counter(t.task_id for t in tasks) == Counter(accepted)  # each exactly once
    assert all("prompt" not in t.payload for t in tasks)  # nothing of the oversize one
    events = scan(platform.settings, topics.events)
    assert Counter(key.decode() for key, _, _ in events if key) == Counter(accepted)


def test_unpublishable_result_goes_to_dlq_alone(platform: Platform) -> None:
    settings = platform.settings
    topics = Topics.of(settings)
    # The results topic takes smaller records than the tasks topic: one task's result will not fit.
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    small_results = NewTopic(topics.results, 2, 1, config={"max.message.bytes": "50000"})
    for future in admin.create_topics([small_results]).values():
        future.result(timeout=30)
    platform.api()
    with platform.client() as client:
        ids = [submit(client, {**ECHO, "payload": {"i": i}}).json()["task_id"] for i in range(63)]
        bad = submit(client, {**ECHO, "payload": {"i": 63, "blob": "b" * 60_000}})
        assert bad.status_code == 202, bad.text
    bad_id = bad.json()["task_id"]
    # Started after the 64 tasks are queued, the worker takes them as one batch of 64.
    platform.worker("echo", "0")

    def results() -> list[TaskResult]:
        return [loads(TaskResult, v) for _, v, _ in scan(settings, topics.results, idle_s=0.5)]

    wait_for(lambda: len(results()) >= 64, 120, "64 results")
    final = results()
    assert Counter(r.task_id for r in final) == Counter([*ids, bad_id])  # nothing duplicated
    assert {r.attempts for r in final} == {1}  # the others were not run again either
    by_id = {r.task_id: r for r in final}
    assert {by_id[i].status.value for i in ids} == {"succeeded"}
    failed = by_id[bad_id]
    assert failed.status.value == "failed"
    assert failed.error is not None and failed.error.code == "record_too_large"
    dlq = scan(settings, topics.dlq)
    assert [key for key, _, _ in dlq] == [bad_id.encode()]
    headers = dict(dlq[0][2])
    assert headers["error"] == b"record_too_large"
    assert b"too large" in headers["reason"] and b"MSG_SIZE_TOO_LARGE" in headers["reason"]
    assert loads(AsyncTask, dlq[0][1]).task_id == bad_id
