"""Blobs by key in an object store: a local directory or an S3-compatible bucket.

A blob is written whole or not at all: the filesystem store renames a finished temporary file
into place, S3 makes an object visible once its upload completes. A reader therefore never sees
half a blob, and a writer that dies mid-upload leaves nothing behind under the key.
Every failure of the store surfaces as `BlobStoreUnavailable`, a missing key as `BlobNotFound`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import obstore
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.store import ObjectStore

from mcp.errors import BlobNotFound, BlobStoreUnavailable

# Streamed uploads go to S3 in parts of this size (S3's minimum part size is 5 MiB).
PART_BYTES = 8 * 1024 * 1024
# Reads hand out chunks of at least this size.
READ_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    last_modified: datetime


class BlobStore:
    """The platform's one door to blob storage; `mcp.blobs.open_blob_store` builds it."""

    def __init__(self, store: ObjectStore, description: str) -> None:
        self._store = store
        self.description = description

    def __repr__(self) -> str:
        return f"BlobStore({self.description})"

    async def put(self, key: str, data: bytes | AsyncIterable[bytes]) -> int:
        """Store `data` under `key` (replacing what was there); returns the size in bytes."""
        size = 0

        async def counted(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                yield chunk

        with _translated(key):
            if isinstance(data, bytes):
                await obstore.put_async(self._store, key, data)
                return len(data)
            await obstore.put_async(self._store, key, counted(data), chunk_size=PART_BYTES)
        return size

    async def get(self, key: str) -> bytes:
        with _translated(key):
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())

    async def chunks(self, key: str) -> tuple[BlobInfo, AsyncIterator[bytes]]:
        """The blob's metadata at once and its bytes as they arrive (for streaming answers)."""
        with _translated(key):
            result = await obstore.get_async(self._store, key)
        meta = result.meta
        info = BlobInfo(key, meta["size"], meta["last_modified"])

        async def stream() -> AsyncIterator[bytes]:
            with _translated(key):
                async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
                    yield bytes(chunk)

        return info, stream()

    async def get_start(self, key: str, length: int) -> bytes:
        """The first `length` bytes (fewer when the blob is shorter; at least one is asked for)."""
        with _translated(key):
            return bytes(await obstore.get_range_async(self._store, key, start=0, length=length))

    async def head(self, key: str) -> BlobInfo:
        with _translated(key):
            meta = await obstore.head_async(self._store, key)
        return BlobInfo(key, meta["size"], meta["last_modified"])

    async def delete(self, key: str) -> None:
        """Remove the blob; a key that holds nothing is not an error (deletes are retried)."""
        try:
            with _translated(key):
                await obstore.delete_async(self._store, key)
        except BlobNotFound:
            pass

    async def listing(self, prefix: str) -> AsyncIterator[BlobInfo]:
        """Every blob whose key starts with `prefix/`, in no particular order."""
        with _translated(prefix):
            async for page in obstore.list(self._store, prefix.rstrip("/")):
                for meta in page:
                    yield BlobInfo(meta["path"], meta["size"], meta["last_modified"])

    def read(self, key: str) -> bytes:
        """`get` for threads outside an event loop (the inference worker)."""
        with _translated(key):
            return bytes(obstore.get(self._store, key).bytes())

    def write(self, key: str, data: bytes) -> int:
        """`put` for threads outside an event loop (the inference worker)."""
        with _translated(key):
            obstore.put(self._store, key, data)
        return len(data)


@contextmanager
def _translated(key: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise BlobNotFound(f"no blob under {key!r}", {"key": key}) from exc
    except (ObjectStoreError, OSError) as exc:
        raise BlobStoreUnavailable(
            f"the blob store failed on {key!r}: {str(exc).splitlines()[0]}", {"key": key}
        ) from exc
