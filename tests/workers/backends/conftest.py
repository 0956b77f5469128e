"""A glm-tiny backend built once per test session in a private cache directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp.settings import ModelSpec, Settings
from schemas import AsyncTask
from workers.backends import TaskContext, make_backend
from workers.backends.transformers_backend import TransformersBackend

MakeContext = Callable[..., TaskContext]


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def backend_settings(model_cache_dir: Path) -> Settings:
    return Settings.model_validate({"dev_mode": True, "cache_dir": str(model_cache_dir)})


@pytest.fixture(scope="session")
def glm_tiny(backend_settings: Settings) -> TransformersBackend:
    spec = backend_settings.model("glm-tiny")
    assert spec is not None
    backend = make_backend(spec, backend_settings)
    assert isinstance(backend, TransformersBackend)
    backend.load()
    return backend


def make_context(model: str, action: str, payload: dict[str, Any], **fields: Any) -> TaskContext:
    return TaskContext(task=AsyncTask(model=model, action=action, payload=payload), **fields)


@pytest.fixture
def ctx() -> MakeContext:
    def build(action: str, payload: dict[str, Any], **fields: Any) -> TaskContext:
        return make_context("glm-tiny", action, payload, **fields)

    return build


def load_transformers(spec: ModelSpec) -> TransformersBackend:
    """A loaded transformers backend for a spec, through the real make_backend path."""
    backend = make_backend(spec, Settings.model_validate({"dev_mode": True}))
    assert isinstance(backend, TransformersBackend)
    backend.load()
    return backend
