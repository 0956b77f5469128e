"""The bidirectional Session and StreamTask over real Kafka, Redis and workers: interleaved
tasks of two models each get one final view, tokens stream in order and resume from a cursor,
and a worker SIGKILLed mid-session still leaves one result per task."""

from __future__ import annotations

import base64
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format

from schemas.autoglm.v1 import service_pb2 as rpc
from tests.grpc_calls import stub, task
from tests.harness import ROOT, Platform, committed_results
from tests.workers.backends.tiny_vision import png_base64

pytestmark = pytest.mark.integration


def _requests(
    bodies: list[rpc.SubmitTaskRequest], pause_every: int = 0
) -> Iterator[rpc.SessionRequest]:
    for i, body in enumerate(bodies):
        if pause_every and i and i % pause_every == 0:
            time.sleep(0.2)  # the client sends as it goes, while earlier tasks answer
        yield rpc.SessionRequest(ref=f"r{i}", submit=body)


def _by_task(updates: list[rpc.TaskUpdate]) -> dict[str, list[rpc.TaskUpdate]]:
    grouped: dict[str, list[rpc.TaskUpdate]] = defaultdict(list)
    for update in updates:
        grouped[update.task_id].append(update)
    return grouped


def test_session_of_fifty_interleaved_tasks_answers_each_once(platform: Platform) -> None:
    platform.grpc()
    platform.worker("echo")
    platform.worker("glm-tiny")
    bodies = [
        task("glm-tiny", prompt=f"step {i}", max_tokens=4) if i % 2 else task(n=i)
        for i in range(50)
    ]
    with stub(platform.grpc_target) as tasks:
        updates = list(tasks.Session(_requests(bodies, pause_every=10), timeout=240))

        errors = [u for u in updates if u.WhichOneof("update") == "error"]
        assert errors == []
        accepted = {u.ref: u.task_id for u in updates if u.WhichOneof("update") == "accepted"}
        assert sorted(accepted) == sorted(f"r{i}" for i in range(50))
        assert len(set(accepted.values())) == 50
        done = Counter(u.task_id for u in updates if u.WhichOneof("update") == "done")
        assert done == Counter(set(accepted.values())), "one final view per task"

        kinds = [u.WhichOneof("update") for u in updates]
        first_done = kinds.index("done")
        assert first_done < max(i for i, k in enumerate(kinds) if k == "accepted"), (
            "answers interleave with submissions"
        )
        streamed = ""
        for i in range(50):
            own = _by_task(updates)[accepted[f"r{i}"]]
            assert own[0].WhichOneof("update") == "accepted"
            assert own[-1].WhichOneof("update") == "done"
            changes = [(u.status.status, u.status.attempt) for u in own if u.HasField("status")]
            assert len(changes) == len(set(changes)), changes
            final = own[-1].done
            assert final.status == "succeeded", final
            result = json_format.MessageToDict(final.result)
            if i % 2 == 0:
                assert result["echo"] == {"n": i}
                continue
            text = "".join(u.token for u in own if u.WhichOneof("update") == "token")
            assert text == result["text"]
            streamed = accepted[f"r{i}"]

        # StreamTask replays a finished task's stream; from a cursor it resumes right after.
        whole = list(tasks.StreamTask(rpc.WatchTask(task_id=streamed), timeout=30))
        assert whole[-1].WhichOneof("update") == "done"
        tokens = [u for u in whole if u.WhichOneof("update") == "token"]
        assert tokens, whole
        resumed = list(tasks.StreamTask(rpc.WatchTask(task_id=streamed, after=tokens[0].cursor)))
        assert [u.token for u in resumed if u.WhichOneof("update") == "token"] == [
            u.token for u in tokens[1:]
        ]
        assert resumed[-1].WhichOneof("update") == "done"

    # The README's phone-agent loop against the same platform; echo answers each step at once
    # (never `finish`), so the loop runs its three steps.
    phone = FakePhone()
    history = readme_agent()["run_agent"](
        phone, "Open settings", target=platform.grpc_target, token="unused", max_steps=3
    )
    assert len(history) == 3 and len(phone.performed) == 2


class FakePhone:
    def __init__(self) -> None:
        self.performed: list[dict[str, Any]] = []

    def screenshot(self) -> bytes:
        return base64.b64decode(png_base64())

    def perform(self, answer: dict[str, Any]) -> None:
        self.performed.append(answer)


def readme_agent() -> dict[str, Any]:
    """The names the README's phone-agent block defines."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- phone-agent-loop")[1].split("```python\n")[1].split("```")[0]
    names: dict[str, Any] = {}
    block = block.replace('model="glm-tiny"', 'model="echo"')
    exec(compile(block, "README.md", "exec"), names)
    return names


def test_worker_killed_mid_session_still_one_result_per_task(platform: Platform) -> None:
    platform.grpc()
    worker = platform.worker("echo")
    bodies = [task(n=i, sleep_ms=100) for i in range(30)]
    finals: Counter[str] = Counter()
    statuses: dict[str, str] = {}
    accepted: set[str] = set()
    with stub(platform.grpc_target) as tasks:
        for update in tasks.Session(_requests(bodies), timeout=240):
            kind = update.WhichOneof("update")
            assert kind != "error", update
            if kind == "accepted":
                accepted.add(update.task_id)
            elif kind == "done":
                finals[update.task_id] += 1
                statuses[update.task_id] = update.done.status
                if sum(finals.values()) == 5:
                    worker.kill()  # SIGKILL mid-batch; a new worker takes the rest over
                    platform.worker("echo")
    assert len(accepted) == 30
    assert finals == Counter(accepted), "one final view per task"
    assert set(statuses.values()) == {"succeeded"}
    results = Counter(r.task_id for r in committed_results(platform.settings))
    assert results == Counter(accepted), "one committed result per task"
