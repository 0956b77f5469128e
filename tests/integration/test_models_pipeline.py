"""Every action of the built-in glm-tiny through the whole pipeline: submit -> worker -> poll."""

from __future__ import annotations

import math

import pytest

from tests.harness import Platform, submit, wait_statuses
from tests.workers.backends.tiny_vision import png_base64

pytestmark = pytest.mark.integration

TASKS = {
    "prompt": ("generate", {"prompt": "Hello, GLM", "max_tokens": 8}),
    "chat": (
        "generate",
        {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6, "seed": 7},
    ),
    "sampled": ("generate", {"prompt": "Once", "max_tokens": 5, "temperature": 0.8, "seed": 3}),
    "embed": ("embed", {"input": ["a phone", "a screen"]}),
    "classify": ("classify", {"input": "tap the icon", "labels": ["tap", "swipe", "type"]}),
    "phone": (
        "phone_step",
        {"instruction": "Open the settings app", "screenshot": png_base64(), "max_tokens": 12},
    ),
}


def test_glm_tiny_actions_through_the_pipeline(platform: Platform) -> None:
    platform.api()
    platform.worker("glm-tiny", "0")
    with platform.client() as client:
        ids = {
            name: submit(
                client, {"model": "glm-tiny", "action": action, "payload": payload}
            ).json()["task_id"]
            for name, (action, payload) in TASKS.items()
        }
        bodies = wait_statuses(client, ids.values(), {"succeeded", "failed"}, timeout=180)
        models = client.get("/v1/models").json()["models"]
    results = {name: bodies[task_id] for name, task_id in ids.items()}
    assert {name: r["status"] for name, r in results.items()} == dict.fromkeys(TASKS, "succeeded")

    generated = results["prompt"]["result"]
    assert isinstance(generated["text"], str)
    assert generated["finish_reason"] in {"stop", "length"}
    assert generated["usage"]["completion_tokens"] <= 8
    assert results["chat"]["result"]["usage"]["prompt_tokens"] > 0

    embeddings = results["embed"]["result"]["embeddings"]
    assert len(embeddings) == 2
    assert all(
        math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-3) for v in embeddings
    )

    scores = results["classify"]["result"]["scores"]
    assert set(scores) == {"tap", "swipe", "type"}
    assert math.isclose(sum(scores.values()), 1.0, rel_tol=1e-3)
    assert results["classify"]["result"]["label"] in scores

    step = results["phone"]["result"]
    assert (
        "raw" in step
    )  # a tiny random model rarely answers well-formed: it is reported, not guessed
    assert step.get("action") is not None or step.get("error", {}).get("code")

    tiny = next(m for m in models if m["name"] == "glm-tiny")
    assert set(tiny["actions"]) == {"generate", "embed", "classify", "phone_step"}
