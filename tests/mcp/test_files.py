"""Files of a project in the blob store: size and digest, limits, ownership, expiry, sweeping."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from mcp.blobs import open_blob_store
from mcp.blobs.files import FileStore, data_key
from mcp.errors import FileNotFound, FileTooLarge
from mcp.settings import Settings
from schemas import utcnow
from tests.conftest import s3_blobs

MiB = 1024 * 1024


@pytest.fixture(params=["filesystem", "s3"])
def files(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> FileStore:
    if request.param == "s3":
        blobs = s3_blobs(request.getfixturevalue("s3_endpoint"), namespace)
    else:
        blobs = {"path": str(tmp_path / "blobs"), "key_prefix": namespace.rstrip(".")}
    return FileStore(open_blob_store(Settings(dev_mode=True, blobs=blobs)))


async def chunked(data: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_create_streams_and_measures(files: FileStore) -> None:
    data = os.urandom(3 * MiB + 17)
    info = await files.create(
        "acme", chunked(data), retention_s=60, max_bytes=8 * MiB, content_type="image/png"
    )
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.expires_at - info.created_at == timedelta(seconds=60)
    assert await files.info("acme", info.id) == info
    assert await files.read("acme", info.id) == data
    assert files.read_sync("acme", info.id) == data


async def test_over_the_limit_keeps_nothing(files: FileStore) -> None:
    with pytest.raises(FileTooLarge) as refused:
        await files.create("acme", chunked(os.urandom(3 * MiB)), retention_s=60, max_bytes=2 * MiB)
    assert refused.value.details == {"max_bytes": 2 * MiB}
    with pytest.raises(FileTooLarge):
        await files.create("acme", os.urandom(100), retention_s=60, max_bytes=99)
    assert [blob async for blob in files.blobs.listing("files")] == []


async def test_another_projects_file_does_not_exist(files: FileStore) -> None:
    info = await files.create("acme", b"secret", retention_s=60, max_bytes=MiB)
    for project, file_id in [("other", info.id), ("acme", "file_" + "0" * 32), ("acme", "../x")]:
        with pytest.raises(FileNotFound):
            await files.info(project, file_id)
        with pytest.raises(FileNotFound):
            await files.content(project, file_id)
        with pytest.raises(FileNotFound):
            files.read_sync(project, file_id)
        with pytest.raises(FileNotFound):
            await files.delete(project, file_id)
    assert await files.read("acme", info.id) == b"secret"


async def test_delete_removes_bytes_and_metadata(files: FileStore) -> None:
    info = await files.create("acme", b"x" * 10, retention_s=60, max_bytes=MiB)
    await files.delete("acme", info.id)
    with pytest.raises(FileNotFound):
        await files.info("acme", info.id)
    assert [blob async for blob in files.blobs.listing("files")] == []


async def test_sweep_removes_expired_files_and_orphaned_bytes(files: FileStore) -> None:
    kept = await files.create("acme", b"kept", retention_s=86_400, max_bytes=MiB)
    gone = await files.create("acme", b"gone", retention_s=1, max_bytes=MiB)
    await files.blobs.put(data_key("acme", "file_" + "1" * 32), b"bytes whose writer died")
    later = utcnow() + timedelta(seconds=5)
    with pytest.raises(FileNotFound):  # bytes without metadata are no file
        await files.info("acme", "file_" + "1" * 32)
    assert await files.sweep(later, orphan_grace_s=3600) == 1
    with pytest.raises(FileNotFound):
        await files.info("acme", gone.id)
    assert await files.sweep(later + timedelta(hours=2), orphan_grace_s=3600) == 1
    left = sorted([blob.key async for blob in files.blobs.listing("files")])
    assert left == sorted([data_key("acme", kept.id), data_key("acme", kept.id) + ".json"])
