"""Files of a project in the blob store: the bytes, then a metadata record that makes them exist.

Keys: `files/<project>/<file_id>` holds the bytes, `files/<project>/<file_id>.json` the
`FileInfo`. The metadata is written last and deleted first, so a file is visible exactly when
its bytes are complete; bytes left without metadata (a writer that died mid-way) and files
past `expires_at` are removed by `sweep`. Another project's file is simply not found: the
project is part of every key. The blob store is the only record of files, so losing Redis
loses no file.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime, timedelta
from urllib.parse import quote

from mcp.blobs.store import BlobStore
from mcp.errors import BlobNotFound, FileNotFound, FileTooLarge
from schemas import utcnow
from schemas.codec import DecodeError, dumps, loads
from schemas.files import FILE_ID, FileInfo, FilePurpose, new_file_id

ROOT = "files"
META = ".json"


def data_key(project: str, file_id: str) -> str:
    return f"{ROOT}/{quote(project, safe='')}/{file_id}"


class FileStore:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    async def create(
        self,
        project: str,
        chunks: bytes | AsyncIterable[bytes],
        *,
        retention_s: float,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        filename: str | None = None,
        purpose: FilePurpose = "upload",
        task_id: str | None = None,
        file_id: str | None = None,
    ) -> FileInfo:
        """Store the bytes (refused past `max_bytes` with nothing kept), then the metadata."""
        file_id = file_id or new_file_id()
        digest = hashlib.sha256()
        size = 0

        async def measured(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in source:
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(
                        f"the file is larger than {max_bytes} bytes", {"max_bytes": max_bytes}
                    )
                digest.update(chunk)
                yield chunk

        key = data_key(project, file_id)
        if isinstance(chunks, bytes):
            if len(chunks) > max_bytes:
                raise FileTooLarge(
                    f"the file is larger than {max_bytes} bytes", {"max_bytes": max_bytes}
                )
            digest.update(chunks)
            size = await self.blobs.put(key, chunks)
        else:
            await self.blobs.put(key, measured(chunks))
        now = utcnow()
        info = FileInfo(
            id=file_id,
            project=project,
            size=size,
            sha256=digest.hexdigest(),
            content_type=content_type,
            filename=filename,
            purpose=purpose,
            task_id=task_id,
            created_at=now,
            expires_at=now + timedelta(seconds=retention_s),
        )
        await self.blobs.put(key + META, dumps(info))
        return info

    def create_sync(
        self, project: str, data: bytes, *, retention_s: float, file_id: str, **fields: object
    ) -> FileInfo:
        """`create` for threads outside an event loop (a worker storing a large result)."""
        key = data_key(project, file_id)
        self.blobs.write(key, data)
        now = utcnow()
        info = FileInfo.model_validate(
            {
                **fields,
                "id": file_id,
                "project": project,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "created_at": now,
                "expires_at": now + timedelta(seconds=retention_s),
            }
        )
        self.blobs.write(key + META, dumps(info))
        return info

    async def info(self, project: str, file_id: str) -> FileInfo:
        if not FILE_ID.match(file_id):
            raise FileNotFound(f"no file {file_id!r}", {"file_id": file_id})
        try:
            raw = await self.blobs.get(data_key(project, file_id) + META)
        except BlobNotFound:
            raise FileNotFound(f"no file {file_id!r}", {"file_id": file_id}) from None
        return self._alive(raw, file_id)

    async def content(self, project: str, file_id: str) -> tuple[FileInfo, AsyncIterator[bytes]]:
        info = await self.info(project, file_id)
        try:
            _, body = await self.blobs.chunks(data_key(project, file_id))
        except BlobNotFound:
            raise FileNotFound(f"no file {file_id!r}", {"file_id": file_id}) from None
        return info, body

    async def read_start(self, info: FileInfo, length: int) -> bytes:
        """The first bytes of a live file (enough to recognise an image's type and size)."""
        if info.size == 0:
            return b""
        key = data_key(info.project, info.id)
        try:
            return await self.blobs.get_start(key, min(length, info.size))
        except BlobNotFound:
            raise FileNotFound(f"no file {info.id!r}", {"file_id": info.id}) from None

    async def read(self, project: str, file_id: str) -> bytes:
        _, body = await self.content(project, file_id)
        return b"".join([chunk async for chunk in body])

    def read_sync(self, project: str, file_id: str) -> bytes:
        """The bytes of a live file, for threads outside an event loop (the inference worker)."""
        if not FILE_ID.match(file_id):
            raise FileNotFound(f"no file {file_id!r}", {"file_id": file_id})
        key = data_key(project, file_id)
        try:
            self._alive(self.blobs.read(key + META), file_id)
            return self.blobs.read(key)
        except BlobNotFound:
            raise FileNotFound(f"no file {file_id!r}", {"file_id": file_id}) from None

    async def delete(self, project: str, file_id: str) -> None:
        await self.info(project, file_id)
        key = data_key(project, file_id)
        await self.blobs.delete(key + META)
        await self.blobs.delete(key)

    async def discard(self, project: str, file_id: str) -> None:
        """Remove a file this process just made and will not use (its task was not recorded)."""
        key = data_key(project, file_id)
        await self.blobs.delete(key + META)
        await self.blobs.delete(key)

    async def sweep(self, now: datetime | None = None, orphan_grace_s: float = 3600.0) -> int:
        """Delete expired files, and bytes that never got their metadata; returns the count."""
        now = now or utcnow()
        listed = {info.key: info async for info in self.blobs.listing(ROOT)}
        removed = 0
        for key, blob in listed.items():
            if key.endswith(META):
                try:
                    expired = loads(FileInfo, await self.blobs.get(key)).expires_at <= now
                except (BlobNotFound, DecodeError):
                    expired = True
                if expired:
                    await self.blobs.delete(key)
                    await self.blobs.delete(key.removesuffix(META))
                    removed += 1
            elif key + META not in listed and blob.last_modified + _grace(orphan_grace_s) <= now:
                await self.blobs.delete(key)
                removed += 1
        return removed

    @staticmethod
    def _alive(raw: bytes, file_id: str) -> FileInfo:
        info = loads(FileInfo, raw)
        if info.expires_at <= utcnow():
            raise FileNotFound(f"file {file_id!r} has expired", {"file_id": file_id})
        return info


def _grace(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
