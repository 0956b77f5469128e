"""Files: inputs too large for Kafka (uploaded, or offloaded at submit) and large results.

A task refers to a file with `{"file_id": "file_…"}` wherever a payload takes bytes; the file
belongs to the submitting project and lives in the blob store until `expires_at`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.task import Frozen

FILE_ID = re.compile(r"^file_[0-9a-f]{32}$")
FilePurpose = Literal["upload", "task_input", "task_result"]


def new_file_id() -> str:
    return f"file_{uuid.uuid4().hex}"


class FileRef(Frozen):
    """In a payload, in place of inline bytes: the id of a file of the same project."""

    file_id: str = Field(pattern=FILE_ID.pattern)


class FileInfo(Frozen):
    """What `POST /v1/files` answers and `GET /v1/files/{id}` shows."""

    id: str = Field(pattern=FILE_ID.pattern)
    object: Literal["file"] = "file"
    project: str
    size: int = Field(ge=0)
    sha256: str
    content_type: str = "application/octet-stream"
    filename: str | None = None
    purpose: FilePurpose = "upload"
    task_id: str | None = None
    created_at: datetime
    expires_at: datetime


class FileView(FileInfo):
    """A file as the API shows it: its metadata and where to fetch its bytes."""

    url: str

    @classmethod
    def of(cls, info: FileInfo) -> FileView:
        return cls(**info.model_dump(), url=content_url(info.id))


def content_url(file_id: str) -> str:
    return f"/v1/files/{file_id}/content"
