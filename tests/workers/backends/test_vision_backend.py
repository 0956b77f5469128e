"""The image + text path (Glm4vForConditionalGeneration) on a tiny random checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcp.errors import InvalidPayload, TaskCancelled
from mcp.settings import ModelSpec
from tests.workers.backends.conftest import load_transformers, make_context
from tests.workers.backends.tiny_vision import build_tiny_glm4v, png_base64
from workers.backends.transformers_backend import TransformersBackend

pytest.importorskip("torchvision", reason="Glm4v processors need torchvision (worker extra)")


@pytest.fixture(scope="module")
def vision(tmp_path_factory: pytest.TempPathFactory) -> TransformersBackend:
    path = build_tiny_glm4v(Path(tmp_path_factory.mktemp("glm4v")))
    spec = ModelSpec(
        name="phone-tiny",
        backend="transformers",
        path=str(path),
        actions=["phone_step", "generate"],
    )
    return load_transformers(spec)


def _ok(result: Any) -> dict[str, Any]:
    assert not isinstance(result, BaseException), result
    return dict(result)


def test_loads_as_a_vision_model(vision: TransformersBackend) -> None:
    assert vision.checkpoint.kind == "vision_lm"
    assert type(vision.checkpoint.model).__name__ == "Glm4vForConditionalGeneration"
    assert vision.checkpoint.processor is not None


def test_phone_step_feeds_the_screenshot_as_an_image(
    vision: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    original = vision.checkpoint.model.generate

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(vision.checkpoint.model, "generate", spy)
    deltas: list[str] = []
    payload = {"instruction": "Open settings", "screenshot": png_base64(), "max_tokens": 8}
    task = make_context("phone-tiny", "phone_step", payload, on_token=deltas.append)
    result = _ok(vision.run_batch("phone_step", [task])[0])
    assert "pixel_values" in seen and "image_grid_thw" in seen
    assert "".join(deltas) == result["raw"]
    assert result["usage"]["completion_tokens"] <= 8
    assert result["action"] is not None or result["error"]["code"] == "malformed_answer"


def test_generate_without_an_image(vision: TransformersBackend) -> None:
    batch = [
        make_context("phone-tiny", "generate", {"prompt": "hello", "max_tokens": 4}),
        make_context(
            "phone-tiny",
            "generate",
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        ),
    ]
    for result in (_ok(r) for r in vision.run_batch("generate", batch)):
        assert result["usage"]["completion_tokens"] <= 4


def test_bad_screenshot_and_cancel_fail_only_their_task(vision: TransformersBackend) -> None:
    bad = make_context(
        "phone-tiny",
        "phone_step",
        {"instruction": "x", "screenshot": "not-an-image", "max_tokens": 4},
    )
    cancelled = make_context("phone-tiny", "phone_step", {"instruction": "x", "max_tokens": 64})
    cancelled.on_token = lambda delta: cancelled.cancel_event.set()
    fine = make_context("phone-tiny", "phone_step", {"instruction": "x", "max_tokens": 4})
    results = vision.run_batch("phone_step", [bad, cancelled, fine])
    assert isinstance(results[0], InvalidPayload)
    assert isinstance(results[1], TaskCancelled)
    _ok(results[2])
