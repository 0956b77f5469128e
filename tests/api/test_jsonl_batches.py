"""JSONL batches: upload, progress, results in order; the manifest survives losing Redis."""

from __future__ import annotations

import json

import pytest
from autoglm_client import Client
from autoglm_client.errors import NotFoundError

from mcp.names import Keys
from mcp.replay import replay_batches
from mcp.store import SyncTaskStore
from tests.harness import Platform, wait_for

pytestmark = pytest.mark.integration

LINES = [
    {"custom_id": "a", "body": {"model": "echo", "action": "generate", "payload": {"n": 1}}},
    {"custom_id": "b", "body": {"model": "no-such-model", "action": "generate"}},
    {
        "custom_id": "c",
        "method": "POST",
        "url": "/v1/tasks",
        "body": {"model": "echo", "action": "embed", "payload": {"n": 2}},
    },
]


def test_upload_progress_results_and_replay(platform: Platform) -> None:
    platform.api()
    platform.worker("echo", "0")
    upload = ("\n".join(json.dumps(line) for line in LINES) + "\n{not json\n").encode()
    with Client(platform.url) as client:
        batch = client.create_batch(upload, idempotency_key="upload-1")
        assert batch.counts.total == 4 and batch.counts.refused == 2
        wait_for(lambda: client.get_batch(batch.batch_id).done, 60, "batch completed")
        done = client.get_batch(batch.batch_id)
        assert done.status == "completed" and done.counts.succeeded == 2
        results = client.batch_results(batch.batch_id)
        assert [r.custom_id for r in results] == ["a", "b", "c", "line-4"]
        assert [r.status for r in results] == ["succeeded", "refused", "succeeded", "refused"]
        assert results[0].result == {"echo": {"n": 1}} and results[1].error is not None
        assert results[1].error.code == "unknown_model"

        again = client.create_batch(upload, idempotency_key="upload-1")
        assert again.batch_id == batch.batch_id
        assert [r.task_id for r in client.batch_results(again.batch_id)] == [
            r.task_id for r in results
        ]

        store = SyncTaskStore(platform.settings)
        store.redis.delete(Keys.of(platform.settings).batch(batch.batch_id))
        with pytest.raises(NotFoundError):
            client.get_batch(batch.batch_id)
        assert replay_batches(platform.settings, store) >= 1
        assert client.get_batch(batch.batch_id).status == "completed"

    with platform.client() as http:
        for body, status in ((b"", 422), (b"\n \n", 422), (b"{}\n" * 1001, 422)):
            answer = http.post("/v1/batches", content=body)
            assert answer.status_code == status, answer.text
        assert http.get("/v1/batches/nope").json()["error"]["code"] == "batch_not_found"
