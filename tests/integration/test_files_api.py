"""The files API, and bad image inputs: clear 4xx answers, nothing half-written."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os

import orjson
import pytest
from PIL import Image

from mcp.blobs import open_blob_store
from mcp.names import Topics
from tests.harness import Platform, free_port, scan, submit
from tests.integration.test_bad_input import assert_error
from tests.screens import phone_png

pytestmark = pytest.mark.integration

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
MAX_FILE = 3_000_000


def auth_api(platform: Platform, **env: str) -> None:
    platform.api(
        AUTOGLM_AUTH__ENABLED="true",
        AUTOGLM_AUTH__API_KEYS='{"key-a": "alpha", "key-b": "beta"}',
        AUTOGLM_BLOBS__MAX_FILE_BYTES=str(MAX_FILE),
        **env,
    )


def phone_task(screenshot: object = None, **payload: object) -> dict[str, object]:
    body: dict[str, object] = {"instruction": "Tap the photo", **payload}
    if screenshot is not None:
        body["screenshot"] = screenshot
    return {"model": "echo", "action": "phone_step", "payload": body}


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (108, 240), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_keys(platform: Platform) -> list[str]:
    async def collect() -> list[str]:
        blobs = open_blob_store(platform.settings)
        return sorted([info.key async for info in blobs.listing("files")])

    return asyncio.run(collect())


def test_files_api_round_trip_and_project_isolation(platform: Platform) -> None:
    auth_api(platform)
    png = phone_png()
    with platform.client() as client:
        raw = client.post(
            "/v1/files?filename=screen.png", content=png, headers={**A, "content-type": "image/png"}
        )
        assert raw.status_code == 201, raw.text
        info = raw.json()
        assert info["size"] == len(png)
        assert info["sha256"] == hashlib.sha256(png).hexdigest()
        assert (info["content_type"], info["filename"]) == ("image/png", "screen.png")
        assert info["url"] == f"/v1/files/{info['id']}/content"

        form = client.post("/v1/files", files={"file": ("s.png", png, "image/png")}, headers=A)
        assert form.status_code == 201, form.text
        assert form.json()["sha256"] == info["sha256"] and form.json()["id"] != info["id"]

        assert client.get(f"/v1/files/{info['id']}", headers=A).json() == info
        content = client.get(info["url"], headers=A)
        assert content.content == png
        assert content.headers["etag"] == f'"{info["sha256"]}"'

        assert_error(client.get(f"/v1/files/{info['id']}", headers=B), 404, "file_not_found")
        assert_error(client.get(info["url"], headers=B), 404, "file_not_found")
        assert_error(client.delete(f"/v1/files/{info['id']}", headers=B), 404, "file_not_found")
        assert_error(client.get("/v1/files/file_nope", headers=A), 404, "file_not_found")
        assert_error(client.post("/v1/files", content=png), 401, "unauthorized")
        foreign = submit(client, phone_task({"file_id": info["id"]}), **B)
        assert_error(foreign, 404, "unknown_file")

        mine = submit(client, phone_task({"file_id": info["id"]}), **A)
        assert mine.status_code == 202, mine.text

        assert client.delete(f"/v1/files/{info['id']}", headers=A).status_code == 204
        assert_error(client.get(f"/v1/files/{info['id']}", headers=A), 404, "file_not_found")
        gone = submit(client, phone_task({"file_id": info["id"]}), **A)
        assert_error(gone, 404, "unknown_file")


def test_bad_screenshots_are_refused_and_leave_nothing(platform: Platform) -> None:
    auth_api(platform)
    garbage = os.urandom(200_000)
    corrupt = bytearray(phone_png())
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = b"\x00" * 64
    with platform.client() as client:
        text = client.post(
            "/v1/files", content=b"not an image", headers={**A, "content-type": "text/plain"}
        ).json()["id"]
        refused = {
            "base64 of garbage": submit(
                client, phone_task(base64.b64encode(garbage).decode()), **A
            ),
            "not base64": submit(client, phone_task("%%% not base64 %%%"), **A),
            "corrupt png": submit(client, phone_task(base64.b64encode(corrupt).decode()), **A),
            "multipart garbage": client.post(
                "/v1/tasks",
                files={
                    "task": (None, orjson.dumps(phone_task()), "application/json"),
                    "screenshot": ("s.png", garbage, "image/png"),
                },
                headers=A,
            ),
            "file of text": submit(client, phone_task({"file_id": text}), **A),
        }
        for case, response in refused.items():
            assert response.status_code == 422, (case, response.text)
            assert response.json()["error"]["code"] == "invalid_image", case

        unknown = submit(client, phone_task({"file_id": "file_" + "0" * 32}), **A)
        assert_error(unknown, 404, "unknown_file")
        malformed = submit(client, phone_task({"file_id": "../../etc/passwd"}), **A)
        assert_error(malformed, 404, "unknown_file")
        twice = client.post(
            "/v1/tasks",
            files={
                "task": (None, orjson.dumps(phone_task(base64.b64encode(small_png()).decode()))),
                "screenshot": ("s.png", small_png(), "image/png"),
            },
            headers=A,
        )
        assert_error(twice, 422, "invalid_request")
        no_task = client.post("/v1/tasks", files={"screenshot": ("s.png", small_png())}, headers=A)
        assert_error(no_task, 422, "invalid_request")
        stray = client.post(
            "/v1/tasks",
            files={
                "task": (None, orjson.dumps({"model": "echo", "action": "generate"})),
                "screenshot": ("s.png", small_png()),
            },
            headers=A,
        )
        assert_error(stray, 422, "invalid_request")
        wrong_type = client.post(
            "/v1/tasks", content=b"model=echo", headers={**A, "content-type": "text/plain"}
        )
        assert_error(wrong_type, 415, "unsupported_media_type")
        not_protobuf = client.post(
            "/v1/tasks", content=b"\xff\x00\x07", headers={**A, "content-type": PROTOBUF}
        )
        assert_error(not_protobuf, 422, "invalid_request")

        too_big = client.post(
            "/v1/files",
            content=os.urandom(MAX_FILE + 1),
            headers={**A, "content-type": "application/octet-stream"},
        )
        assert_error(too_big, 413, "payload_too_large")
        assert too_big.json()["error"]["details"]["max_bytes"] >= MAX_FILE
        body_limit = platform.settings.server.max_body_bytes
        huge = submit(client, phone_task("A" * body_limit), **A)
        assert_error(huge, 413, "payload_too_large")
        assert huge.json()["error"]["details"] == {"max_bytes": body_limit}

    topic = Topics.of(platform.settings).tasks("echo")
    assert scan(platform.settings, topic) == []
    assert stored_keys(platform) == sorted([f"files/alpha/{text}", f"files/alpha/{text}.json"])


PROTOBUF = "application/x-protobuf"


def test_blob_store_outage_answers_503_and_records_nothing(platform: Platform) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    platform.api(
        AUTOGLM_BLOBS__BACKEND="s3",
        AUTOGLM_BLOBS__S3__ENDPOINT=dead,
        AUTOGLM_BLOBS__S3__ACCESS_KEY_ID="k",
        AUTOGLM_BLOBS__S3__SECRET_ACCESS_KEY="s",
        AUTOGLM_BLOBS__MAX_RETRIES="0",
        AUTOGLM_BLOBS__TIMEOUT_S="2",
    )
    with platform.client() as client:
        response = client.post(
            "/v1/tasks",
            files={
                "task": (None, orjson.dumps(phone_task())),
                "screenshot": ("s.png", phone_png(), "image/png"),
            },
        )
        assert_error(response, 503, "blob_store_unavailable")
        assert response.headers["retry-after"] == "1"
        upload = client.post("/v1/files", content=b"x" * 10)
        assert_error(upload, 503, "blob_store_unavailable")
    assert scan(platform.settings, Topics.of(platform.settings).tasks("echo")) == []
