"""The blob store against a real directory and a real S3-compatible server (S3Proxy)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp.blobs import BlobStore, open_blob_store
from mcp.blobs.store import PART_BYTES
from mcp.errors import BlobNotFound, BlobStoreUnavailable
from mcp.settings import Settings
from tests.conftest import S3_ACCESS_KEY, s3_blobs


@pytest.fixture(params=["filesystem", "s3"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> Settings:
    if request.param == "s3":
        blobs = s3_blobs(request.getfixturevalue("s3_endpoint"), namespace)
    else:
        blobs = {"path": str(tmp_path / "blobs"), "key_prefix": namespace.rstrip(".")}
    return Settings(dev_mode=True, blobs=blobs)


@pytest.fixture
def store(store_settings: Settings) -> BlobStore:
    return open_blob_store(store_settings)


async def parts(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_bytes_round_trip(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    assert await store.put("inputs/a/screenshot", data) == len(data)
    assert await store.get("inputs/a/screenshot") == data
    assert store.read("inputs/a/screenshot") == data
    info = await store.head("inputs/a/screenshot")
    assert (info.key, info.size) == ("inputs/a/screenshot", len(data))
    assert store.write("results/a", b"{}") == 2
    assert await store.get("results/a") == b"{}"


async def test_streamed_upload_larger_than_a_part(store: BlobStore) -> None:
    chunks = [os.urandom(4 * 1024 * 1024) for _ in range(3)]
    data = b"".join(chunks)
    assert len(data) > PART_BYTES
    assert await store.put("files/p/big", parts(*chunks)) == len(data)
    info, body = await store.chunks("files/p/big")
    assert info.size == len(data)
    read = b"".join([chunk async for chunk in body])
    assert hashlib.sha256(read).digest() == hashlib.sha256(data).digest()


async def test_aborted_upload_leaves_nothing(store: BlobStore) -> None:
    class TooLarge(Exception):
        pass

    async def refused() -> AsyncIterator[bytes]:
        yield os.urandom(PART_BYTES)
        yield os.urandom(PART_BYTES)
        raise TooLarge

    with pytest.raises(TooLarge):
        await store.put("files/p/partial", refused())
    with pytest.raises(BlobNotFound):
        await store.head("files/p/partial")
    assert [info async for info in store.listing("files")] == []


async def test_delete_is_idempotent_and_missing_keys_are_not_found(store: BlobStore) -> None:
    await store.put("files/p/x", b"x")
    await store.delete("files/p/x")
    await store.delete("files/p/x")
    with pytest.raises(BlobNotFound):
        await store.get("files/p/x")
    with pytest.raises(BlobNotFound):
        store.read("files/p/x")
    with pytest.raises(BlobNotFound):
        await store.chunks("files/p/x")


async def test_listing_is_by_prefix_and_namespaces_are_apart(
    store: BlobStore, store_settings: Settings
) -> None:
    await store.put("inputs/t1/screenshot", b"1")
    await store.put("inputs/t2/screenshot", b"22")
    await store.put("files/p/f1", b"333")
    listed = {info.key: info.size async for info in store.listing("inputs")}
    assert listed == {"inputs/t1/screenshot": 1, "inputs/t2/screenshot": 2}
    other = store_settings.blobs.model_copy(update={"key_prefix": "elsewhere"})
    neighbour = open_blob_store(store_settings.model_copy(update={"blobs": other}))
    assert [info async for info in neighbour.listing("inputs")] == []


async def test_unreachable_or_refusing_s3_is_unavailable(s3_endpoint: str) -> None:
    down = Settings(
        dev_mode=True,
        blobs={
            **s3_blobs("http://127.0.0.1:9", "t."),
            "max_retries": 1,
            "timeout_s": 2,
        },
    )
    with pytest.raises(BlobStoreUnavailable):
        await open_blob_store(down).put("k", b"x")
    wrong_key = s3_blobs(s3_endpoint, "t.")
    wrong_key["s3"] = {
        "endpoint": s3_endpoint,
        "access_key_id": S3_ACCESS_KEY,
        "secret_access_key": "not-the-secret",
    }
    with pytest.raises(BlobStoreUnavailable):
        await open_blob_store(Settings(dev_mode=True, blobs=wrong_key)).get("k")
