"""Model backends: `make_backend(spec, settings)` picks the class for a registry entry."""

from __future__ import annotations

from mcp.errors import ModelLoadError
from mcp.settings import ModelSpec, Settings
from workers.backends.base import Backend, Result, TaskContext

__all__ = ["Backend", "Result", "TaskContext", "make_backend"]


def make_backend(spec: ModelSpec, settings: Settings) -> Backend:
    """A backend for the spec, not yet loaded: the worker calls `load()` once, in its process."""
    if spec.backend == "echo":
        from workers.backends.echo import EchoBackend

        return EchoBackend(spec)
    if spec.backend == "transformers":
        from workers.backends.transformers_backend import TransformersBackend

        return TransformersBackend(spec, settings)
    if spec.backend == "openai":
        from workers.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(spec, settings)
    raise ModelLoadError(f"model {spec.name!r}: unknown backend {spec.backend!r}")
