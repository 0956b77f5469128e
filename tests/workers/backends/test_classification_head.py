"""classify uses a checkpoint's sequence-classification head when it has one."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from mcp.errors import InvalidPayload
from mcp.settings import ModelSpec, Settings
from tests.workers.backends.conftest import make_context
from workers.backends import make_backend
from workers.backends.transformers_backend import TransformersBackend

LABELS = {0: "negative", 1: "neutral", 2: "positive"}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> TransformersBackend:
    import torch
    from transformers import AutoConfig, GlmForSequenceClassification

    from workers.backends.glm_tiny import build_glm_tiny

    root = Path(tmp_path_factory.mktemp("classifier"))
    build_glm_tiny(root / "base")
    config = AutoConfig.from_pretrained(root / "base", local_files_only=True)
    config.id2label = LABELS
    config.label2id = {v: k for k, v in LABELS.items()}
    config.architectures = ["GlmForSequenceClassification"]
    torch.manual_seed(0)
    GlmForSequenceClassification(config).save_pretrained(root / "head")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(root / "base" / name, root / "head" / name)
    spec = ModelSpec(
        name="sentiment", backend="transformers", path=str(root / "head"), actions=["classify"]
    )
    backend = make_backend(spec, Settings.model_validate({"dev_mode": True}))
    assert isinstance(backend, TransformersBackend)
    backend.load()
    return backend


def test_scores_come_from_the_head(classifier: TransformersBackend) -> None:
    assert classifier.checkpoint.kind == "sequence_classifier"
    batch = [
        make_context(
            "sentiment", "classify", {"input": "I love it", "labels": ["Positive", "negative"]}
        ),
        make_context(
            "sentiment",
            "classify",
            {"input": "Meh.", "labels": ["negative", "neutral", "positive"]},
        ),
    ]
    results = classifier.run_batch("classify", batch)
    for result in results:
        assert not isinstance(result, BaseException), result
        assert math.isclose(sum(result["scores"].values()), 1.0, rel_tol=1e-5)
        assert result["label"] == max(result["scores"], key=result["scores"].__getitem__)
    assert set(results[0]["scores"]) == {"Positive", "negative"}  # type: ignore[index]


def test_labels_the_head_does_not_know_are_refused(classifier: TransformersBackend) -> None:
    bad = make_context("sentiment", "classify", {"input": "x", "labels": ["spam", "ham"]})
    good = make_context("sentiment", "classify", {"input": "x", "labels": ["positive", "negative"]})
    results = classifier.run_batch("classify", [bad, good])
    assert isinstance(results[0], InvalidPayload)
    assert results[0].details == {"labels": ["negative", "neutral", "positive"]}
    assert not isinstance(results[1], BaseException)
