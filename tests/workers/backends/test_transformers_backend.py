"""Every action of the transformers backend on glm-tiny, batching included."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from mcp.errors import BackendError, InvalidPayload, TaskCancelled, TaskTimeout, UnknownAction
from tests.workers.backends.conftest import MakeContext
from workers.backends.base import TaskContext
from workers.backends.transformers_backend import TransformersBackend

PROMPTS = [
    "Hello",
    "Open the settings app and turn on dark mode, then go back to the home screen.",
    "The quick brown fox",
    "x",
    "Search for a coffee shop nearby and show the opening hours for tomorrow morning.",
]


def _ok(result: Any) -> dict[str, Any]:
    assert not isinstance(result, BaseException), result
    return dict(result)


def _generate(backend: TransformersBackend, ctx: MakeContext, **payload: Any) -> dict[str, Any]:
    return _ok(backend.run_batch("generate", [ctx("generate", payload)])[0])


def test_generate_returns_text_finish_reason_and_usage(
    glm_tiny: TransformersBackend, ctx: MakeContext
) -> None:
    result = _generate(glm_tiny, ctx, prompt="Hello", max_tokens=12)
    assert isinstance(result["text"], str) and result["text"]
    assert result["finish_reason"] in ("stop", "length")
    usage = result["usage"]
    assert usage["completion_tokens"] <= 12 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_generate_from_chat_messages(glm_tiny: TransformersBackend, ctx: MakeContext) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hi"}]},
    ]
    result = _generate(glm_tiny, ctx, messages=messages, max_tokens=8)
    assert result["usage"]["prompt_tokens"] > 5


def test_greedy_batch_equals_one_by_one(glm_tiny: TransformersBackend, ctx: MakeContext) -> None:
    batch = [ctx("generate", {"prompt": p, "max_tokens": 24}) for p in PROMPTS]
    together = [_ok(r) for r in glm_tiny.run_batch("generate", batch)]
    alone = [_generate(glm_tiny, ctx, prompt=p, max_tokens=24) for p in PROMPTS]
    assert [r["text"] for r in together] == [r["text"] for r in alone]
    assert [r["usage"] for r in together] == [r["usage"] for r in alone]
    assert len({r["usage"]["prompt_tokens"] for r in together}) > 2  # lengths really differ


def test_rows_with_different_max_tokens_share_a_batch(
    glm_tiny: TransformersBackend, ctx: MakeContext
) -> None:
    sizes = [3, 16, 9]
    batch = [ctx("generate", {"prompt": "Hello", "max_tokens": n}) for n in sizes]
    results = [_ok(r) for r in glm_tiny.run_batch("generate", batch)]
    longest = results[1]["text"]
    for size, result in zip(sizes, results, strict=True):
        assert result["usage"]["completion_tokens"] <= size
        assert longest.startswith(result["text"])


def test_streamed_deltas_concatenate_to_the_text(
    glm_tiny: TransformersBackend, ctx: MakeContext
) -> None:
    streams: list[list[str]] = [[], []]
    batch = [
        ctx("generate", {"prompt": p, "max_tokens": 20}, on_token=streams[i].append)
        for i, p in enumerate(PROMPTS[:2])
    ]
    results = [_ok(r) for r in glm_tiny.run_batch("generate", batch)]
    for deltas, result in zip(streams, results, strict=True):
        assert len(deltas) > 1
        assert "".join(deltas) == result["text"]


def test_stop_string_cuts_text_and_stream(glm_tiny: TransformersBackend, ctx: MakeContext) -> None:
    full = _generate(glm_tiny, ctx, prompt="The quick brown fox", max_tokens=24)["text"]
    middle = len(full) // 2
    stop = next(
        full[i : i + 2] for i in range(middle, len(full)) if "\ufffd" not in full[i : i + 2]
    )
    deltas: list[str] = []
    payload = {"prompt": "The quick brown fox", "max_tokens": 24, "stop": [stop]}
    result = _ok(
        glm_tiny.run_batch("generate", [ctx("generate", payload, on_token=deltas.append)])[0]
    )
    assert result["text"] == full[: full.find(stop)]
    assert result["finish_reason"] == "stop"
    assert "".join(deltas) == result["text"]


def test_seeded_sampling_is_reproducible_alone_or_batched(
    glm_tiny: TransformersBackend, ctx: MakeContext
) -> None:
    payload = {"prompt": "Hello", "max_tokens": 16, "temperature": 0.9, "top_p": 0.9, "seed": 7}
    alone = _generate(glm_tiny, ctx, **payload)["text"]
    other = {**payload, "prompt": "Something else entirely", "seed": 8}
    batch = [ctx("generate", other), ctx("generate", payload)]
    assert _ok(glm_tiny.run_batch("generate", batch)[1])["text"] == alone


def test_a_failing_task_does_not_fail_its_batch_mates(
    glm_tiny: TransformersBackend, ctx: MakeContext
) -> None:
    def broken_callback(delta: str) -> None:
        raise RuntimeError("the stream of this task is broken")

    batch = [
        ctx("generate", {"prompt": PROMPTS[0], "max_tokens": 10}),
        ctx("generate", {"prompt": PROMPTS[1], "max_tokens": 10}, on_token=broken_callback),
        ctx("generate", {"prompt": PROMPTS[2], "max_tokens": 10, "unknown_field": 1}),
        ctx("generate", {"prompt": PROMPTS[3], "max_tokens": 10}),
    ]
    results = glm_tiny.run_batch("generate", batch)
    assert isinstance(results[1], BackendError) and "broken" in str(results[1])
    assert isinstance(results[2], InvalidPayload) and getattr(results[2], "permanent", False)
    for index in (0, 3):
        expected = _generate(glm_tiny, ctx, prompt=PROMPTS[index], max_tokens=10)
        assert _ok(results[index])["text"] == expected["text"]


def test_cancel_and_deadline_stop_a_task_alone(
    glm_tiny: TransformersBackend, ctx: MakeContext
) -> None:
    cancelled = ctx("generate", {"prompt": "Hello", "max_tokens": 64})
    cancelled.on_token = lambda delta: cancelled.cancel_event.set()
    late = ctx("generate", {"prompt": "Hello", "max_tokens": 64}, deadline=time.monotonic() - 1)
    fine = ctx("generate", {"prompt": "Hello", "max_tokens": 8})
    results = glm_tiny.run_batch("generate", [cancelled, late, fine])
    assert isinstance(results[0], TaskCancelled)
    assert isinstance(results[1], TaskTimeout)
    assert _ok(results[2])["usage"]["completion_tokens"] <= 8


def test_batch_keys_group_compatible_sampling(glm_tiny: TransformersBackend) -> None:
    key = glm_tiny.batch_key
    greedy = key("generate", {"prompt": "a", "max_tokens": 20})
    assert greedy == key("generate", {"prompt": "bb", "max_tokens": 30, "stop": ["x"], "seed": 3})
    assert greedy != key("generate", {"prompt": "a", "max_tokens": 200})
    assert greedy != key("generate", {"prompt": "a", "max_tokens": 20, "temperature": 0.7})
    assert key("embed", {"input": "a"}) == key("embed", {"input": ["b", "c"]})
    assert key("embed", {"input": "a"}) != key("classify", {"input": "a", "labels": ["x", "y"]})


def test_embed_is_normalised_and_batch_independent(
    glm_tiny: TransformersBackend, ctx: MakeContext
) -> None:
    batch = [
        ctx("embed", {"input": ["hello world", "a much longer sentence here"]}),
        ctx("embed", {"input": "hi"}),
    ]
    first, second = (_ok(r) for r in glm_tiny.run_batch("embed", batch))
    assert first["dim"] == 64 and len(first["embeddings"]) == 2 and len(second["embeddings"]) == 1
    for vector in first["embeddings"] + second["embeddings"]:
        assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-4)
    alone = _ok(glm_tiny.run_batch("embed", [ctx("embed", {"input": "hi"})])[0])
    assert alone["embeddings"][0] == pytest.approx(second["embeddings"][0], abs=1e-5)
    assert first["usage"]["prompt_tokens"] > 0


def test_classify_with_lm_likelihood(glm_tiny: TransformersBackend, ctx: MakeContext) -> None:
    labels = ["positive", "negative", "neutral"]
    batch = [
        ctx("classify", {"input": "I love this product", "labels": labels}),
        ctx("classify", {"input": "Terrible.", "labels": ["yes", "no"]}),
    ]
    for result in (_ok(r) for r in glm_tiny.run_batch("classify", batch)):
        scores = result["scores"]
        assert math.isclose(sum(scores.values()), 1.0, rel_tol=1e-5)
        assert result["label"] == max(scores, key=scores.__getitem__)
    assert glm_tiny.checkpoint.kind == "causal_lm"


def test_phone_step_on_a_text_model(glm_tiny: TransformersBackend, ctx: MakeContext) -> None:
    payload = {"instruction": "Open the settings", "screenshot": "iVBORw0KGgo=", "max_tokens": 12}
    result = _ok(glm_tiny.run_batch("phone_step", [ctx("phone_step", payload)])[0])
    assert set(result) >= {"action", "args", "thinking", "raw", "usage"}
    if result["action"] is None:  # random weights: almost surely not the action grammar
        assert result["error"]["code"] == "malformed_answer"


def test_unknown_action_fails_each_task(glm_tiny: TransformersBackend, ctx: MakeContext) -> None:
    batch: list[TaskContext] = [ctx("translate", {}), ctx("translate", {})]
    assert all(isinstance(r, UnknownAction) for r in glm_tiny.run_batch("translate", batch))
