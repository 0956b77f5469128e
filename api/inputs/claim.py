"""The claim check at submit: large inputs go to the blob store before the Kafka commit.

Image fields arrive three ways (inline base64, a raw file part, the id of an uploaded file); each
is checked as an image, and one above `blobs.inline_image_bytes` is stored as a file of the
project, the payload then holding `{"file_id": …}`. A payload still larger than
`blobs.offload_bytes` as JSON is itself stored, and the task carries `payload_file` (and the
payload's scalar fields). Files made here live as long as the task may (queue time, run time,
retention), and the submitter discards them when the task is not recorded, so no file outlives
a task that never was.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from api.inputs.images import check_image
from mcp.blobs.files import FileStore
from mcp.errors import BlobError, FileNotFound, InvalidImage, UnknownInputFile, ValidationFailed
from mcp.settings import Settings
from schemas import SubmitRequest
from schemas.files import FileInfo
from schemas.payloads import IMAGE_FIELDS

log = logging.getLogger(__name__)
# Enough of a file to read an image header (type, width, height) without fetching it whole.
HEADER_BYTES = 65_536
MAX_METADATA_BYTES = 16_384


@dataclass
class Prepared:
    """A payload ready for Kafka, and the files made for it (to discard if it is not recorded)."""

    task_id: str
    payload: dict[str, Any]
    payload_file: str | None = None
    created: list[FileInfo] = field(default_factory=list)
    sent: bool = False  # handed to the producer: from then on the task may be recorded


class ClaimCheck:
    def __init__(self, files: FileStore, settings: Settings) -> None:
        self.files = files
        self.settings = settings

    async def prepare(
        self, body: SubmitRequest, project: str, task_id: str, raw: dict[str, bytes]
    ) -> Prepared:
        _check_metadata(body.metadata)
        fields = IMAGE_FIELDS.get(body.action, ())
        unexpected = sorted(set(raw) - set(fields))
        if unexpected:
            raise ValidationFailed(
                f"action {body.action!r} takes no file part {unexpected[0]!r}",
                {"file_parts": unexpected, "accepted": list(fields)},
            )
        prepared = Prepared(task_id, dict(body.payload))
        try:
            for name in fields:
                await self._image_field(prepared, name, raw.get(name), body, project, task_id)
            await self._offload_payload(prepared, body, project, task_id)
        except BaseException:
            await self.discard(project, prepared)
            raise
        return prepared

    async def discard(self, project: str, prepared: Prepared) -> None:
        """Best effort: what cannot be deleted now is swept when it expires."""
        for info in prepared.created:
            try:
                await self.files.discard(project, info.id)
            except BlobError as exc:
                log.warning("could not discard file %s of an unrecorded task: %s", info.id, exc)

    async def _image_field(
        self,
        prepared: Prepared,
        name: str,
        raw: bytes | None,
        body: SubmitRequest,
        project: str,
        task_id: str,
    ) -> None:
        value = prepared.payload.get(name)
        if raw is not None and value is not None:
            raise ValidationFailed(
                f"{name!r} came both in the payload and as a file part; send it once",
                {"field": name},
            )
        if isinstance(value, dict):
            await self._check_file_ref(project, name, str(value.get("file_id", "")))
            return
        data = raw if raw is not None else _from_base64(name, value) if value else None
        if data is None:
            return
        try:
            facts = await asyncio.to_thread(check_image, data)
        except InvalidImage as exc:
            raise InvalidImage(
                exc.message.replace("the screenshot", repr(name), 1),
                {"field": name, **(exc.details or {})},
            ) from exc
        if len(data) <= self.settings.blobs.inline_image_bytes:
            prepared.payload[name] = base64.b64encode(data).decode()
            return
        info = await self._store(
            body, project, task_id, data, prepared, content_type=facts.content_type, filename=name
        )
        prepared.payload[name] = {"file_id": info.id}

    async def _check_file_ref(self, project: str, name: str, file_id: str) -> None:
        try:
            info = await self.files.info(project, file_id)
            header = await self.files.read_start(info, HEADER_BYTES)
        except FileNotFound:
            raise UnknownInputFile(
                f"{name!r} refers to no file of this project: {file_id!r}",
                {"field": name, "file_id": file_id},
            ) from None
        try:
            check_image(header, complete=False)
        except InvalidImage as exc:
            raise InvalidImage(
                f"file {file_id!r} given as {name!r} is not a PNG, JPEG or WebP image",
                {"field": name, "file_id": file_id, **(exc.details or {})},
            ) from exc

    async def _offload_payload(
        self, prepared: Prepared, body: SubmitRequest, project: str, task_id: str
    ) -> None:
        encoded = orjson.dumps(prepared.payload)
        if len(encoded) <= self.settings.blobs.offload_bytes:
            return
        info = await self._store(
            body, project, task_id, encoded, prepared, content_type="application/json"
        )
        # Scalars stay inline (sampling, `stream`): the worker batches and streams by them
        # before it fetches the file, which holds the whole payload.
        prepared.payload = {k: v for k, v in prepared.payload.items() if _scalar(v)}
        prepared.payload_file = info.id

    async def _store(
        self,
        body: SubmitRequest,
        project: str,
        task_id: str,
        data: bytes,
        prepared: Prepared,
        *,
        content_type: str,
        filename: str | None = None,
    ) -> FileInfo:
        info = await self.files.create(
            project,
            data,
            retention_s=self.retention_s(body),
            max_bytes=self.settings.blobs.max_file_bytes,
            content_type=content_type,
            filename=filename,
            purpose="task_input",
            task_id=task_id,
        )
        prepared.created.append(info)
        return info

    def retention_s(self, body: SubmitRequest) -> float:
        """A task input outlives the task's queue wait, every attempt and its retention."""
        settings = self.settings
        running = body.timeout_s * settings.worker.max_attempts
        return body.ttl_s + running + settings.redis.task_retention_s


def _from_base64(name: str, value: object) -> bytes:
    text = str(value)
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(
            f"{name!r} is not base64 ({exc}); send the image as base64, a file part or a file_id",
            {"field": name},
        ) from exc


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float)


def _check_metadata(metadata: dict[str, Any]) -> None:
    size = len(orjson.dumps(metadata))
    if size > MAX_METADATA_BYTES:
        raise ValidationFailed(
            f"metadata is {size} bytes as JSON, more than {MAX_METADATA_BYTES}",
            {"max_bytes": MAX_METADATA_BYTES},
        )
