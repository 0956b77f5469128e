"""The whole path: submit -> Kafka -> worker -> task-results -> signed webhook; and SSE."""

from __future__ import annotations

import time

import httpx
import pytest

from mcp.names import Topics
from tests.harness import Platform, submit, submit_echo, wait_for, wait_statuses
from tests.mcp.webhooks.conftest import SECRET, Receiver, verify

pytestmark = pytest.mark.integration


@pytest.fixture
def signed(platform: Platform) -> Platform:
    """The test platform with a configured webhook secret."""
    return platform.variant(
        webhooks={"secrets": {"default": [SECRET]}, "schedule_s": [0.0, 0.2, 0.5]}
    )


def test_submit_to_signed_webhook(signed: Platform) -> None:
    receiver = Receiver()
    try:
        signed.api()
        signed.worker("echo", "0")
        signed.dispatcher()
        with signed.client() as client:
            body = {
                "model": "echo",
                "action": "generate",
                "payload": {"prompt": "hello webhook"},
                "callback_url": receiver.url("/hook"),
                "webhook_events_filter": ["completed", "started"],
                "metadata": {"order": 42},
            }
            task_id = submit(client, body).json()["task_id"]
            wait_for(lambda: len(receiver.on("/hook")) >= 2, 60, "two webhooks")
            wait_for(
                lambda: (
                    client.get(f"/v1/tasks/{task_id}").json()["webhook"]["status"] == "delivered"
                ),
                30,
                "webhook delivered",
            )
            view = client.get(f"/v1/tasks/{task_id}").json()
        events = [verify(r) for r in receiver.on("/hook")]
        types = [e["type"] for e in events]
        assert types == ["task.started", "task.succeeded"]
        final = events[-1]["data"]
        assert final["task_id"] == task_id and final["status"] == "succeeded"
        assert final["result"] == {"echo": {"prompt": "hello webhook"}}
        assert final["metadata"] == {"order": 42}
        assert view["webhook"]["attempts"] == 1 and view["webhook"]["last_status_code"] == 200
        ids = [r.webhook_id for r in receiver.on("/hook")]
        assert len(set(ids)) == 2

        with signed.client() as client:
            again = client.post(f"/v1/tasks/{task_id}/webhook/redeliver")
            assert again.status_code == 202
            wait_for(lambda: len(receiver.on("/hook")) >= 3, 30, "redelivered webhook")
        redelivered = receiver.on("/hook")[2]
        assert redelivered.webhook_id == ids[1]  # the same event, so the same id
        assert verify(redelivered)["type"] == "task.succeeded"
    finally:
        receiver.close()
        signed.stop()


def _sse(response: httpx.Response) -> list[tuple[str, str, str]]:
    events: list[tuple[str, str, str]] = []
    entry: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if entry:
                events.append((entry.get("id", ""), entry.get("event", ""), entry.get("data", "")))
            entry = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        entry[name] = value
    return events


def test_sse_stream_resumes_from_last_event_id(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    words = [f"w{i}" for i in range(30)]
    with platform.client() as client:
        task_id = submit(
            client, {"model": "echo", "action": "generate", "payload": {"prompt": " ".join(words)}}
        ).json()["task_id"]
        wait_statuses(client, [task_id], {"succeeded"})
        with client.stream("GET", f"/v1/tasks/{task_id}/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            full = _sse(response)
        cut = 12
        resume_from = full[cut][0]
        with client.stream(
            "GET", f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": resume_from}
        ) as response:
            rest = _sse(response)
    kinds = [kind for _, kind, _ in full]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert kinds.count("token") == len(words)
    assert rest == full[cut + 1 :]  # no gap, no repeat
    assert '"succeeded"' in full[-1][2]


def test_infer_waits_for_the_answer_and_takes_the_mcp_envelope(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    with platform.client() as client:
        plain = client.post(
            "/v1/infer",
            json={"model": "echo", "action": "generate", "payload": {"prompt": "now"}},
            headers={"Prefer": "wait=20"},
        )
        assert plain.status_code == 200, plain.text
        assert plain.json()["status"] == "succeeded"
        assert plain.json()["result"] == {"echo": {"prompt": "now"}}

        envelope = {
            "request_id": "req-7",
            "action": "generate",
            "payload": {"prompt": "enveloped"},
            "metadata": {"source": "sdk"},
        }
        first = client.post("/v1/infer", json=envelope, headers={"Prefer": "wait=20"})
        again = client.post("/v1/infer", json=envelope, headers={"Prefer": "wait=20"})
        assert first.status_code == 200 and first.json()["request_id"] == "req-7"
        assert first.json()["model"] == "echo"  # the default model
        assert again.json().get("task_id") == first.json()["task_id"], again.text

        slow = client.post(
            "/v1/infer",
            json={"model": "echo", "action": "generate", "payload": {"sleep_ms": 3000}},
            headers={"Prefer": "wait=0.2"},
        )
        assert slow.status_code == 202 and slow.json()["status"] == "queued"

        # Alive for longer than a heartbeat key lives: the worker keeps beating while it polls.
        time.sleep(platform.settings.worker.heartbeat_interval_s * 3.5)
        workers = client.get("/v1/workers").json()["workers"]
        assert [w["worker_id"] for w in workers] == ["echo.0"]
        assert workers[0]["state"] == "alive"
        assert workers[0]["processed"] >= 3
        lanes = len(Topics.of(platform.settings).lanes("echo"))  # one topic per priority
        assert len(workers[0]["partitions"]) == lanes * platform.settings.kafka.partitions
        metrics = client.get("/metrics").text
        assert 'autoglm_tasks_submitted_total{action="generate",model="echo"}' in metrics


def test_a_poll_can_wait_for_the_task_to_end(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        (task_id,) = submit_echo(client, 1)
        path = f"/v1/tasks/{task_id}"
        # No worker yet: the wait runs out, and the answer is the task as it is.
        waited = client.get(path, params={"wait": 0.3})
        assert waited.status_code == 200 and waited.json()["status"] == "queued", waited.text
        for wrong in ("-1", "301", "soon"):
            refused = client.get(path, params={"wait": wrong})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "invalid_request"
        assert client.get("/v1/tasks/no-such-task", params={"wait": 5}).status_code == 404
        platform.worker("echo", "0")
        done = client.get(path, params={"wait": 60}, timeout=90)
        assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text
        assert done.json()["result"] == {"echo": {"n": 0}}


def test_burst_worker_exits_once_the_queue_is_drained(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        task_ids = submit_echo(client, 20)
        burst = platform._proc("burst", ["worker", "--model", "echo", "--burst"])
        assert burst.popen is not None and burst.popen.wait(60) == 0, burst.log()
        bodies = wait_statuses(client, task_ids, {"succeeded"}, timeout=5)
    assert len(bodies) == 20


def test_large_answers_are_gzipped_for_clients_that_ask(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    with platform.client() as client:
        body = {"model": "echo", "action": "generate", "payload": {"prompt": "word " * 800}}
        task_id = submit(client, body).json()["task_id"]
        wait_statuses(client, [task_id], {"succeeded"})
        zipped = client.get(f"/v1/tasks/{task_id}", headers={"Accept-Encoding": "gzip"})
        plain = client.get(f"/v1/tasks/{task_id}", headers={"Accept-Encoding": "identity"})
    assert zipped.headers.get("content-encoding") == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()
