"""Phone-sized screenshots reach phone_step every way they can be sent, and Kafka stays small.

A 1080x2400 PNG of about 2.8 MB goes inline as base64, as a multipart file part, through the
files API and as raw bytes in Protobuf; each task ends, and no record of the task, event or
result topics exceeds 256 KiB. With the S3 store (a real S3 server process) the echo model
sends the whole screenshot back, so its result is stored as a file and fetched by its link.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from mcp.names import Topics
from mcp.settings import Settings
from schemas import SubmitRequest, SubmitResponse
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.codec import PROTOBUF, decode
from schemas.protobuf import to_protobuf
from tests.conftest import make_settings, s3_blobs
from tests.harness import Platform, scan, wait_statuses
from tests.screens import phone_png

pytestmark = pytest.mark.integration

MAX_RECORD = 256 * 1024
INSTRUCTION = "Open the photo and share it"


def screenshot_ways(client: httpx.Client, model: str, png: bytes) -> dict[str, str]:
    """Submit one phone_step per way of sending the screenshot; task id by way."""
    payload: dict[str, Any] = {"instruction": INSTRUCTION, "max_tokens": 12}
    task: dict[str, Any] = {"model": model, "action": "phone_step", "payload": payload}
    ids: dict[str, str] = {}

    inline = {**task, "payload": {**payload, "screenshot": base64.b64encode(png).decode()}}
    ids["base64"] = accepted(client.post("/v1/tasks", content=orjson.dumps(inline), headers=JSON))

    parts = {"task": (None, orjson.dumps(task), "application/json")}
    files = {**parts, "screenshot": ("screen.png", png, "image/png")}
    ids["multipart"] = accepted(client.post("/v1/tasks", files=files))

    upload = client.post("/v1/files", content=png, headers={"content-type": "image/png"})
    assert upload.status_code == 201, upload.text
    file_id = upload.json()["id"]
    by_ref = {**task, "payload": {**payload, "screenshot": {"file_id": file_id}}}
    ids["files"] = accepted(client.post("/v1/tasks", content=orjson.dumps(by_ref), headers=JSON))

    message = to_protobuf(SubmitRequest.model_validate(task))
    assert isinstance(message, pb.SubmitRequest)
    message.files["screenshot"] = png
    response = client.post(
        "/v1/tasks",
        content=message.SerializeToString(),
        headers={"content-type": PROTOBUF, "accept": PROTOBUF},
    )
    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == PROTOBUF
    ids["protobuf"] = decode(SubmitResponse, response.content, PROTOBUF).task_id
    return ids


JSON = {"content-type": "application/json"}


def accepted(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def largest_records(settings: Settings, model: str) -> dict[str, int]:
    topics = Topics.of(settings)
    sizes = {}
    for name in (topics.tasks(model), topics.events, topics.results):
        records = scan(settings, name)
        assert records, name
        sizes[name] = max(len(value or b"") for _, value, _ in records)
    return sizes


def test_phone_screenshot_every_way_on_glm_tiny(platform: Platform) -> None:
    png = phone_png()
    assert len(png) >= 2_500_000
    platform.api()
    platform.worker("glm-tiny")
    with platform.client() as client:
        ids = screenshot_ways(client, "glm-tiny", png)
        done = wait_statuses(client, ids.values(), {"succeeded", "failed"}, timeout=180)
    for way, task_id in ids.items():
        body = done[task_id]
        assert body["status"] == "succeeded", (way, body)
        step = body["result"]  # a parsed action, or why the tiny model's answer did not parse
        assert step.get("action") is not None or step["error"]["code"], (way, step)
    sizes = largest_records(platform.settings, "glm-tiny")
    assert max(sizes.values()) <= MAX_RECORD, sizes


@pytest.fixture
def s3_platform(
    kafka_bootstrap: str, redis_url: str, namespace: str, s3_endpoint: str, tmp_path: Path
) -> Iterator[Platform]:
    settings = make_settings(
        kafka_bootstrap, redis_url, namespace, blobs=s3_blobs(s3_endpoint, namespace)
    )
    plat = Platform(settings, tmp_path)
    yield plat
    plat.stop()


def test_phone_screenshot_with_the_s3_store_and_a_large_result(s3_platform: Platform) -> None:
    png = phone_png()
    s3_platform.api()
    s3_platform.worker("echo")
    with s3_platform.client() as client:
        ids = screenshot_ways(client, "echo", png)
        done = wait_statuses(client, ids.values(), {"succeeded", "failed"}, timeout=120)
        for way, task_id in ids.items():
            body = done[task_id]
            assert body["status"] == "succeeded", (way, body)
            link = body["result"]["file"]
            assert link["url"] == f"/v1/files/{link['id']}/content"
            content = client.get(link["url"])
            assert content.status_code == 200
            assert content.headers["content-type"] == "application/json"
            echoed = orjson.loads(content.content)["echo"]
            assert base64.b64decode(echoed["screenshot"]) == png, way
            assert echoed["instruction"] == INSTRUCTION
    sizes = largest_records(s3_platform.settings, "echo")
    assert max(sizes.values()) <= MAX_RECORD, sizes
