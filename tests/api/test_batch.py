"""`POST /v1/tasks:batch`: 1,000 tasks in one committed transaction, answers per item."""

from __future__ import annotations

import re

import httpx
import pytest
from autoglm_client import Client

from mcp.names import Topics
from schemas import AsyncTask, loads
from tests.harness import Platform, scan

pytestmark = pytest.mark.integration


def transactions(client: httpx.Client) -> int:
    metrics = client.get("/metrics").text
    match = re.search(r"^autoglm_api_transactions (\S+)$", metrics, re.M)
    assert match, metrics[:500]
    return int(float(match.group(1)))


def test_a_thousand_tasks_are_one_transaction(platform: Platform) -> None:
    platform.api()
    tasks = [{"model": "echo", "action": "generate", "payload": {"n": i}} for i in range(1000)]
    with platform.client() as http, Client(platform.url) as client:
        client.submit("echo", payload={"warm": True})  # the topics exist, the producer is up
        before = transactions(http)
        answer = client.submit_batch(tasks)
        after = transactions(http)
        assert answer.accepted == 1000 and answer.refused == 0
        assert after - before == 1
        ids = [item.task_id for item in answer.items]
        assert [item.index for item in answer.items] == list(range(1000))
        assert {item.status for item in answer.items} == {202} and len(set(ids)) == 1000
        assert client.get(str(ids[-1])).status == "queued"
    queued = [
        loads(AsyncTask, v)
        for _, v, _ in scan(platform.settings, Topics.of(platform.settings).tasks("echo"))
    ]
    batch = {t.task_id: t.payload["n"] for t in queued if "n" in t.payload}
    assert batch == {task_id: n for n, task_id in enumerate(ids)}


def test_each_item_is_answered_on_its_own(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    echo = {"model": "echo", "action": "generate"}
    items = [
        {**echo, "payload": {"n": 1}, "idempotency_key": "k1"},
        {**echo, "model": "no-such-model"},
        {**echo, "timeout_s": -1},
        {"model": "glm-tiny", "action": "generate", "payload": {"max_tokens": 4}},
        {**echo, "payload": {"n": 1}, "idempotency_key": "k1"},
        {**echo, "payload": {"n": 2}, "idempotency_key": "k1"},
    ]
    with platform.client() as http:
        body = http.post("/v1/tasks:batch", json={"tasks": items}).json()
        answers = body["items"]
        assert [a["status"] for a in answers] == [202, 422, 422, 422, 200, 409]
        assert (body["accepted"], body["refused"]) == (2, 4)
        codes = [a["error"]["code"] if a["error"] else None for a in answers]
        assert codes == [
            None,
            "unknown_model",
            "invalid_request",
            "invalid_payload",
            None,
            "idempotency_conflict",
        ]
        assert answers[2]["error"]["details"][0]["loc"] == ["body", "tasks", 2, "timeout_s"]
        assert answers[4]["task_id"] == answers[0]["task_id"]
        again = http.post("/v1/tasks:batch", json={"tasks": items[:1]}).json()["items"][0]
        assert (again["status"], again["task_id"]) == (200, answers[0]["task_id"])

        for refused, status in (
            (b"{not json", 400),
            (b'{"tasks": []}', 422),
            (b'{"tasks": [1]}', 422),
            (b'{"tasks": [' + b",".join([b"{}"] * 1001) + b"]}", 422),
        ):
            answer = http.post(
                "/v1/tasks:batch", content=refused, headers={"content-type": "application/json"}
            )
            assert answer.status_code == status and "error" in answer.json(), answer.text
