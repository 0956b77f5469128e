"""The worker's claim check wraps a backend without changing how it runs: same concurrency,
members reported as each is done, a missing file fails its member alone, a large result is
stored as a file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mcp.blobs import open_blob_store
from mcp.blobs.files import FileStore
from mcp.settings import ModelSpec, Settings
from schemas import AsyncTask
from workers.backends.base import ResultOrError, TaskContext
from workers.backends.echo import EchoBackend
from workers.inputs import ClaimCheckBackend, InputMissing, TaskFiles


def wrapped(tmp_path: Path) -> ClaimCheckBackend:
    settings = Settings(dev_mode=True, blobs={"path": str(tmp_path), "offload_bytes": 1024})
    files = TaskFiles(FileStore(open_blob_store(settings)), settings)
    return ClaimCheckBackend(EchoBackend(ModelSpec(name="echo")), files)


def context(payload: dict[str, Any], payload_file: str | None = None) -> TaskContext:
    task = AsyncTask(model="echo", action="generate", payload=payload, payload_file=payload_file)
    return TaskContext(task=task)


def test_keeps_the_inner_backends_concurrency(tmp_path: Path) -> None:
    assert wrapped(tmp_path).concurrency == EchoBackend.concurrency > 1


def test_reports_each_member_as_it_is_done(tmp_path: Path) -> None:
    backend = wrapped(tmp_path)
    batch = [context({"n": 0, "sleep_ms": 1000}), context({"n": 1}), context({"n": 2})]
    start = time.monotonic()
    seen: list[tuple[int, float, ResultOrError]] = []
    backend.run_streaming("generate", batch, lambda i, r: seen.append((i, time.monotonic(), r)))
    assert [i for i, _, _ in seen] == [1, 2, 0]
    assert all(at - start < 0.5 for _, at, _ in seen[:2]), seen


def test_a_missing_file_fails_its_member_alone(tmp_path: Path) -> None:
    backend = wrapped(tmp_path)
    gone = context({}, payload_file="file_" + "0" * 32)
    results = backend.run_batch("generate", [gone, context({"n": 1})])
    assert isinstance(results[0], InputMissing)
    assert results[1] == {"echo": {"n": 1}}


def test_a_large_result_becomes_a_link_to_its_file(tmp_path: Path) -> None:
    backend = wrapped(tmp_path)
    [result] = backend.run_batch("generate", [context({"text": "x" * 4096})])
    assert isinstance(result, dict) and set(result) == {"file"}
    link = result["file"]
    assert link["size"] > 4096 and link["url"].endswith(f"/v1/files/{link['id']}/content")
    stored = backend.files.files.read_sync("default", link["id"])
    assert b"x" * 4096 in stored
