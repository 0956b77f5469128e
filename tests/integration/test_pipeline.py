"""Promises 1, 2, 3 and 5 against real Kafka, real Redis and real processes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import httpx
import orjson
import pytest
import redis
from confluent_kafka import Producer

from mcp.names import Topics
from tests.harness import (
    Platform,
    committed_results,
    scan,
    submit,
    submit_echo,
    wait_for,
    wait_statuses,
)
from workers.main import FORCED_EXIT

pytestmark = pytest.mark.integration

ECHO = {"model": "echo", "action": "generate"}


def assert_one_result_each(platform: Platform, task_ids: list[str]) -> None:
    counts = Counter(r.task_id for r in committed_results(platform.settings))
    missing = [t for t in task_ids if counts[t] == 0]
    duplicated = {t: n for t, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} task(s) without a committed result"
    assert not duplicated, f"task(s) with several committed results: {duplicated}"
    assert set(counts) <= set(task_ids)


async def _submit_many(url: str, count: int, concurrency: int = 64) -> list[str]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with gate:
                r = await client.post(
                    "/v1/tasks", json={**ECHO, "payload": {"prompt": f"task {i}"}}
                )
                assert r.status_code == 202, r.text
                return str(r.json()["task_id"])

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_thousand_concurrent_tasks_each_have_exactly_one_result(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    task_ids = asyncio.run(_submit_many(platform.url, 1000))
    assert len(set(task_ids)) == 1000
    with platform.client() as client:
        bodies = wait_statuses(client, task_ids, {"succeeded", "failed"}, timeout=180)
    assert {b["status"] for b in bodies.values()} == {"succeeded"}
    assert bodies[task_ids[7]]["result"] == {"echo": {"prompt": "task 7"}}
    assert_one_result_each(platform, task_ids)


def test_sigkill_worker_mid_batch_loses_nothing_and_duplicates_nothing(platform: Platform) -> None:
    platform.api()
    first = platform.worker("echo", "0")
    with platform.client() as client:
        # Tasks long enough that a worker running several at once is still busy when killed.
        task_ids = [
            submit(client, {**ECHO, "payload": {"prompt": str(i), "sleep_ms": 1000}}).json()[
                "task_id"
            ]
            for i in range(40)
        ]
        # Kill while a task is running, with earlier ones done and later ones still queued.
        done_before: set[str] = set()
        victim: list[str] = []

        def some_done_one_running() -> bool:
            statuses = {t: client.get(f"/v1/tasks/{t}").json()["status"] for t in task_ids}
            running = [t for t, s in statuses.items() if s == "running"]
            done = {t for t, s in statuses.items() if s == "succeeded"}
            if done and running:
                done_before.update(done)
                victim.append(running[0])
                return True
            return False

        wait_for(some_done_one_running, 60, "a finished and a running task", interval=0.01)
        first.kill()
        platform.worker("echo", "0")  # same slot: fences the dead one's transactional.id
        bodies = wait_statuses(client, task_ids, {"succeeded", "failed"}, timeout=120)
    assert all(bodies[t]["attempts"] == 1 for t in done_before)  # committed work stays done
    # The kill hit work in flight: some task ran twice, and was still published once.
    assert any(b["attempts"] == 2 for b in bodies.values()), victim
    assert {b["status"] for b in bodies.values()} == {"succeeded"}
    assert_one_result_each(platform, task_ids)


def test_api_restart_between_submissions(platform: Platform) -> None:
    api = platform.api()
    platform.worker("echo", "0")
    task_ids: list[str] = []
    with platform.client() as client:
        task_ids += submit_echo(client, 20)
        api.kill()
        platform.api()
        task_ids += submit_echo(client, 20)
        bodies = wait_statuses(client, task_ids, {"succeeded"}, timeout=60)
    assert len(bodies) == 40
    assert_one_result_each(platform, task_ids)


def test_redis_loss_is_repaired_by_replay(platform: Platform) -> None:
    # A Redis database of its own, so that losing it touches no other test's state.
    own_db = platform.settings.redis.url.rsplit("/", 1)[0] + "/7"
    platform = platform.variant(redis={"url": own_db})
    platform.api()
    platform.worker("echo", "0")
    with platform.client() as client:
        task_ids = submit_echo(client, 30)
        before = wait_statuses(client, task_ids, {"succeeded"})
        redis.Redis.from_url(own_db).flushdb()
        assert client.get(f"/v1/tasks/{task_ids[0]}").status_code == 404
        platform.stop()
        replay = platform._proc("replay", ["replay"])
        assert replay.popen is not None and replay.popen.wait(120) == 0, replay.log()
        platform.api(AUTOGLM_SERVER__RUN_PROJECTOR="false")
        after = wait_statuses(client, task_ids, {"succeeded"}, timeout=10)
    platform.stop()
    for task_id in task_ids:
        for field in ("status", "result", "attempts", "created_at", "model", "action"):
            assert after[task_id][field] == before[task_id][field], field


def test_idempotency_key_repeat_and_conflict(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        body = {**ECHO, "payload": {"prompt": "once"}}
        first = submit(client, body, **{"Idempotency-Key": "k-1"})
        again = submit(client, body, **{"Idempotency-Key": "k-1"})
        other = submit(
            client, {**ECHO, "payload": {"prompt": "twice"}}, **{"Idempotency-Key": "k-1"}
        )
    assert first.status_code == 202
    assert again.status_code == 200 and again.json()["task_id"] == first.json()["task_id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    records = scan(platform.settings, Topics.of(platform.settings).tasks("echo"))
    assert len(records) == 1


def test_cancel_while_queued_never_runs(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        task_id = submit(client, {**ECHO, "payload": {"prompt": "x"}}).json()["task_id"]
        cancelled = client.post(f"/v1/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert client.post(f"/v1/tasks/{task_id}/cancel").json()["status"] == "cancelled"
        platform.worker("echo", "0")
        wait_for(lambda: len(committed_results(platform.settings)) == 1, 60, "cancelled result")
        body = client.get(f"/v1/tasks/{task_id}").json()
    [result] = committed_results(platform.settings)
    assert result.status.value == "cancelled" and result.result is None
    assert body["status"] == "cancelled" and body["attempts"] == 0


def test_cancel_while_running_stops_the_backend(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    with platform.client() as client:
        task_id = submit(client, {**ECHO, "payload": {"sleep_ms": 20000}}).json()["task_id"]
        wait_statuses(client, [task_id], {"running"})
        assert client.post(f"/v1/tasks/{task_id}/cancel").json()["status"] == "running"
        bodies = wait_statuses(client, [task_id], {"cancelled"}, timeout=15)
    assert bodies[task_id]["result"] is None
    assert_one_result_each(platform, [task_id])


def test_ttl_expiry_while_queued(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        task_id = submit(client, {**ECHO, "ttl_s": 0.5, "payload": {}}).json()["task_id"]
        time.sleep(1.0)
        platform.worker("echo", "0")
        bodies = wait_statuses(client, [task_id], {"expired"}, timeout=60)
    assert bodies[task_id]["attempts"] == 0
    assert_one_result_each(platform, [task_id])


def test_task_failing_every_attempt_ends_failed_and_in_dlq(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    with platform.client() as client:
        failing = submit(client, {**ECHO, "payload": {"fail_times": 99}}).json()["task_id"]
        flaky = submit(client, {**ECHO, "payload": {"fail_times": 1}}).json()["task_id"]
        bodies = wait_statuses(client, [failing, flaky], {"succeeded", "failed"})
    assert bodies[failing]["status"] == "failed"
    assert bodies[failing]["attempts"] == platform.settings.worker.max_attempts
    assert bodies[failing]["error"]["code"] == "backend_error"
    assert bodies[flaky]["status"] == "succeeded" and bodies[flaky]["attempts"] == 2
    dlq = scan(platform.settings, Topics.of(platform.settings).dlq)
    assert [orjson.loads(v)["task_id"] for _, v, _ in dlq] == [failing]


def test_timeout_while_running_fails_with_code_timeout(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    with platform.client() as client:
        task_id = submit(client, {**ECHO, "timeout_s": 0.3, "payload": {"sleep_ms": 5000}}).json()[
            "task_id"
        ]
        bodies = wait_statuses(client, [task_id], {"failed", "succeeded"}, timeout=60)
    assert bodies[task_id]["status"] == "failed"
    assert bodies[task_id]["error"]["code"] == "timeout"


def test_undecodable_message_goes_to_dlq_without_stalling(platform: Platform) -> None:
    platform.api()
    topics = Topics.of(platform.settings)
    platform.worker("echo", "0")
    producer = Producer({"bootstrap.servers": platform.settings.kafka.bootstrap_servers})
    for partition in range(platform.settings.kafka.partitions):
        producer.produce(topics.tasks("echo"), b"\x00not a task", b"garbage", partition=partition)
    producer.flush(10)
    with platform.client() as client:
        task_ids = submit_echo(client, 10)
        wait_statuses(client, task_ids, {"succeeded"}, timeout=60)
    dlq = scan(platform.settings, topics.dlq)
    garbage = [h for k, v, h in dlq if v == b"\x00not a task"]
    assert len(garbage) == platform.settings.kafka.partitions
    assert ("error", b"undecodable") in garbage[0]


def test_sigterm_drains_in_flight_work_and_leaves_the_group(platform: Platform) -> None:
    platform.api()
    worker = platform.worker("echo", "0")
    with platform.client() as client:
        task_ids = submit_echo(client, 15, sleep_ms=200)
        running: list[str] = []

        def one_running() -> bool:
            for t in task_ids:
                if client.get(f"/v1/tasks/{t}").json()["status"] == "running":
                    running.append(t)
                    return True
            return False

        wait_for(one_running, 60, "a running task", interval=0.01)
        assert worker.terminate(timeout=60) == 0, worker.log()
        # Drained: the task that was running finished in the stopping worker, once.
        assert client.get(f"/v1/tasks/{running[0]}").json()["status"] == "succeeded"
        platform.worker("echo", "1")  # another slot takes the partitions at once
        bodies = wait_statuses(client, task_ids, {"succeeded"}, timeout=60)
    assert bodies[running[0]]["attempts"] == 1
    assert all(b["attempts"] == 1 for b in bodies.values())
    assert_one_result_each(platform, task_ids)


def test_a_second_sigterm_ends_the_drain_at_once_and_the_task_runs_again(
    platform: Platform,
) -> None:
    platform.api()
    worker = platform.worker("echo", "0")
    with platform.client() as client:
        [task_id] = submit_echo(client, 1, sleep_ms=15_000)
        wait_statuses(client, [task_id], {"running"}, timeout=60)
        assert worker.popen is not None
        worker.popen.send_signal(signal.SIGTERM)
        wait_for(lambda: "draining" in worker.log(), 30, "the drain to begin")
        worker.popen.send_signal(signal.SIGTERM)
        # Well before the task's 15 s: the second signal does not wait for it.
        assert worker.popen.wait(10) == FORCED_EXIT, worker.log()
        assert "exiting at once" in worker.log()
        assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "running"
        platform.worker("echo", "1")  # the next owner of the partition runs it again
        body = wait_statuses(client, [task_id], {"succeeded"}, timeout=90)[task_id]
    assert body["attempts"] == 2
    assert_one_result_each(platform, [task_id])
