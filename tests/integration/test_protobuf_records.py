"""Switching Kafka records to Protobuf is a rolling change: old and new encodings are read alike.

One API writes JSON records, another Protobuf, and the worker answers in Protobuf; the worker,
the projector and the dispatcher read both, and every record says which encoding it holds.
"""

from __future__ import annotations

import pytest

from mcp.names import Topics
from mcp.records import content_type_of
from schemas.codec import JSON, PROTOBUF
from tests.harness import Platform, committed_results, scan, submit, wait_for, wait_statuses
from tests.mcp.webhooks.conftest import SECRET, Receiver, verify

pytestmark = pytest.mark.integration


def test_json_and_protobuf_records_side_by_side(platform: Platform) -> None:
    signed = platform.variant(webhooks={"secrets": {"default": [SECRET]}})
    protobuf = signed.variant(kafka={"encoding": "protobuf"})
    receiver = Receiver()
    try:
        signed.api()
        protobuf.api(AUTOGLM_INSTANCE_ID=f"{platform.settings.instance_id}-pb")
        protobuf.worker("echo")
        signed.dispatcher()
        body = {"model": "echo", "action": "generate", "callback_url": receiver.url("/hook")}
        ids = []
        for plat, n in [(signed, 1), (protobuf, 2), (signed, 3), (protobuf, 4)]:
            with plat.client() as client:
                task = {**body, "payload": {"prompt": "hi", "n": n, "temperature": 0.5}}
                answer = submit(client, task)
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["task_id"])
        with signed.client() as client:
            done = wait_statuses(client, ids, {"succeeded"}, timeout=60)
        assert [done[t]["result"]["echo"]["n"] for t in ids] == [1, 2, 3, 4]
        assert all(isinstance(done[t]["result"]["echo"]["n"], int) for t in ids)
        wait_for(lambda: len(receiver.on("/hook")) >= 4, 60, "four webhooks")
        hooks = {verify(r)["data"]["task_id"]: verify(r)["data"] for r in receiver.on("/hook")}
        assert {hooks[t]["result"]["echo"]["n"] for t in ids} == {1, 2, 3, 4}
    finally:
        receiver.close()
    topics = Topics.of(platform.settings)
    task_types = [content_type_of(h) for _, _, h in scan(platform.settings, topics.tasks("echo"))]
    assert sorted(str(t) for t in task_types) == [JSON, JSON, PROTOBUF, PROTOBUF]
    result_types = {content_type_of(h) for _, _, h in scan(platform.settings, topics.results)}
    assert result_types == {PROTOBUF}
    assert sorted(r.task_id for r in committed_results(platform.settings)) == sorted(ids)
