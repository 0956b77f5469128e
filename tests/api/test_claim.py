"""The claim check at submit, on a filesystem store: what stays in the task, what becomes a file."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson

from api.inputs.claim import ClaimCheck
from mcp.blobs import open_blob_store
from mcp.blobs.files import FileStore
from mcp.settings import Settings
from schemas import SubmitRequest
from tests.screens import phone_png


def claim_check(tmp_path: Path) -> ClaimCheck:
    settings = Settings(dev_mode=True, blobs={"path": str(tmp_path)})
    return ClaimCheck(FileStore(open_blob_store(settings)), settings)


async def test_a_large_payload_keeps_its_scalars_inline(tmp_path: Path) -> None:
    claim = claim_check(tmp_path)
    payload = {"prompt": "word " * 20_000, "temperature": 0.7, "max_tokens": 32, "stream": False}
    body = SubmitRequest(model="echo", action="generate", payload=payload)
    prepared = await claim.prepare(body, "acme", "t1", {})
    # The worker batches by sampling and streams by `stream` before it fetches the file.
    assert prepared.payload == {"temperature": 0.7, "max_tokens": 32, "stream": False}
    assert prepared.payload_file is not None
    assert orjson.loads(await claim.files.read("acme", prepared.payload_file)) == payload


async def test_a_phone_screenshot_becomes_a_file_reference(tmp_path: Path) -> None:
    claim = claim_check(tmp_path)
    png = phone_png()
    payload = {"instruction": "Tap", "screenshot": base64.b64encode(png).decode()}
    body = SubmitRequest(model="echo", action="phone_step", payload=payload)
    prepared = await claim.prepare(body, "acme", "t2", {})
    ref = prepared.payload["screenshot"]
    assert prepared.payload_file is None and set(ref) == {"file_id"}
    assert await claim.files.read("acme", ref["file_id"]) == png
    [info] = prepared.created
    assert (info.purpose, info.task_id, info.content_type) == ("task_input", "t2", "image/png")
