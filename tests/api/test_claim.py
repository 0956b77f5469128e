"""The claim check at submit, on a filesystem store: what stays in the task, what becomes a file."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from api.inputs.claim import ClaimCheck
from mcp.blobs import open_blob_store
from mcp.blobs.files import FileStore
from mcp.errors import InvalidImage
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


@pytest.mark.parametrize("data", [b"plain text", phone_png()[:5000]], ids=["text", "truncated"])
async def test_a_corrupt_screenshot_is_refused_naming_its_field(
    tmp_path: Path, data: bytes
) -> None:
    claim = claim_check(tmp_path)
    body = SubmitRequest(model="echo", action="phone_step", payload={"instruction": "Tap"})
    with pytest.raises(InvalidImage) as refused:
        await claim.prepare(body, "acme", "t3", {"screenshot": data})
    assert refused.value.message.startswith("'screenshot' is not")
    assert "object at 0x" not in refused.value.message
    assert refused.value.details["field"] == "screenshot"
    assert [blob async for blob in claim.files.blobs.listing("files")] == []  # nothing kept
