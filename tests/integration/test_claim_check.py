"""The claim check beyond screenshots: large payloads and results, and inputs that vanish."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from mcp.blobs import open_blob_store
from mcp.blobs.files import FileStore
from mcp.names import Topics
from schemas.codec import loads
from schemas.files import FileInfo
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


def test_a_submission_refused_after_its_files_were_made_leaves_none(platform: Platform) -> None:
    # Room for two active tasks; no worker, so they stay queued and hold their places.
    platform.api(AUTOGLM_QUOTAS__PROJECTS='{"default": {"max_active": 2}}')
    screenshot = base64.b64encode(phone_png()).decode()

    def step(instruction: str) -> dict[str, Any]:
        payload = {"instruction": instruction, "screenshot": screenshot}
        return {"model": "echo", "action": "phone_step", "payload": payload}

    key = {"idempotency-key": "the-same-key"}
    with platform.client() as client:
        assert submit(client, {"model": "echo", "action": "generate"}).status_code == 202
        kept = submit(client, step("Tap"), **key)
        assert kept.status_code == 202, kept.text
        # Each of these stored its screenshot before it was refused or answered by the first.
        assert_error(submit(client, step("Swipe"), **key), 409, "idempotency_conflict")
        assert submit(client, step("Tap"), **key).json()["task_id"] == kept.json()["task_id"]
        assert_error(submit(client, step("Back")), 429, "quota_exceeded")
    files = FileStore(open_blob_store(platform.settings))

    async def listed() -> list[str]:
        return sorted([blob.key async for blob in files.blobs.listing("files")])

    [data, meta] = asyncio.run(listed())  # the kept task's screenshot alone
    assert meta == data + ".json"
    info = loads(FileInfo, asyncio.run(files.blobs.get(meta)))
    assert (info.purpose, info.task_id) == ("task_input", kept.json()["task_id"])
