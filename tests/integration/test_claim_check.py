"""The claim check beyond screenshots: large payloads and results, and inputs that vanish."""

from __future__ import annotations

import orjson
import pytest

from mcp.names import Topics
from tests.harness import Platform, scan, submit, wait_statuses
from tests.integration.test_bad_input import assert_error
from tests.screens import phone_png

pytestmark = pytest.mark.integration

MAX_RECORD = 256 * 1024


def test_large_payload_and_result_travel_as_files(platform: Platform) -> None:
    platform.api()
    platform.worker("echo")
    prompt = "word " * 100_000  # 500 kB of JSON: above offload_bytes, and above Kafka's comfort
    with platform.client() as client:
        payload = {"prompt": prompt, "stream": False}
        task = {"model": "echo", "action": "generate", "payload": payload}
        task_id = submit(client, task).json()["task_id"]
        view = wait_statuses(client, [task_id], {"succeeded", "failed"}, timeout=60)[task_id]
        assert view["status"] == "succeeded", view
        link = view["result"]["file"]
        info = client.get(f"/v1/files/{link['id']}").json()
        assert (info["purpose"], info["task_id"]) == ("task_result", task_id)
        assert info["size"] == link["size"] and info["sha256"] == link["sha256"]
        assert orjson.loads(client.get(link["url"]).content) == {"echo": payload}
    topics = Topics.of(platform.settings)
    for topic in (topics.tasks("echo"), topics.events, topics.results):
        assert max(len(value) for _, value, _ in scan(platform.settings, topic)) <= MAX_RECORD


def test_oversized_metadata_is_refused(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        body = {"model": "echo", "action": "generate", "metadata": {"notes": "x" * 20_000}}
        assert_error(submit(client, body), 422, "invalid_request")


def test_a_file_deleted_before_its_task_runs_fails_the_task(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        file_id = client.post(
            "/v1/files", content=phone_png(), headers={"content-type": "image/png"}
        ).json()["id"]
        payload = {"instruction": "Tap", "screenshot": {"file_id": file_id}}
        task = {"model": "echo", "action": "phone_step", "payload": payload}
        task_id = submit(client, task).json()["task_id"]
        assert client.delete(f"/v1/files/{file_id}").status_code == 204
        platform.worker("echo")
        view = wait_statuses(client, [task_id], {"succeeded", "failed"}, timeout=60)[task_id]
    assert view["status"] == "failed"
    assert view["error"]["code"] == "input_missing"
    assert view["attempts"] == 1  # a missing input is not retried
