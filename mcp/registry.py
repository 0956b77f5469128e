"""The model registry: which models exist, what they offer, and what their payloads must be."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mcp.errors import InvalidPayload, UnknownAction, UnknownModel
from mcp.packaged_models import builtin_specs as packaged_specs
from mcp.settings import ModelSpec, Settings
from schemas.payloads import PAYLOADS


class ModelRegistry:
    """The configured models plus the real small models whose PyPI packages are installed."""

    def __init__(self, settings: Settings) -> None:
        specs = [*settings.models, *packaged_specs(settings)]
        self.specs: dict[str, ModelSpec] = {m.name: m for m in specs}

    def get(self, model: str) -> ModelSpec | None:
        return self.specs.get(model)

    def resolve(self, model: str, action: str) -> ModelSpec:
        spec = self.specs.get(model)
        if spec is None:
            raise UnknownModel(
                f"unknown model {model!r}", {"model": model, "known": sorted(self.specs)}
            )
        if action not in spec.actions:
            raise UnknownAction(
                f"model {model!r} does not offer action {action!r}",
                {"model": model, "action": action, "actions": spec.actions},
            )
        return spec

    def validate_payload(self, spec: ModelSpec, action: str, payload: dict[str, Any]) -> None:
        """Refuse a payload its action cannot run. `echo` takes any JSON object."""
        if spec.backend == "echo":
            return
        schema = PAYLOADS.get(action)
        if schema is None:
            raise UnknownAction(f"no payload schema for action {action!r}", {"action": action})
        try:
            schema.model_validate(payload, strict=True)
        except ValidationError as exc:
            details = [
                {"loc": ["payload", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False)
            ]
            raise InvalidPayload(f"invalid payload for {action!r}", details) from exc

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": spec.name,
                "backend": spec.backend,
                "actions": spec.actions,
                "max_batch_size": spec.max_batch_size,
                "max_wait_ms": spec.max_wait_ms,
                "builtin": spec.builtin,
            }
            for spec in self.specs.values()
        ]
