"""Which generation tasks may share a batch: same action and compatible sampling settings."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

DEFAULT_MAX_TOKENS = {"generate": 64, "phone_step": 256}


def max_tokens_bucket(max_tokens: int) -> int:
    """Tasks asking for similar lengths share a batch: 1-16, 17-32, 33-64, ..."""
    bucket = 16
    while bucket < max_tokens:
        bucket *= 2
    return bucket


def sampling_key(action: str, payload: dict[str, Any]) -> Hashable:
    """Greedy tasks group together whatever their top_p; stop strings and seeds are per row."""
    temperature = float(payload.get("temperature", 0.0) or 0.0)
    top_p = float(payload.get("top_p", 1.0) or 1.0) if temperature > 0 else 1.0
    default = DEFAULT_MAX_TOKENS.get(action, 64)
    max_tokens = int(payload.get("max_tokens", default) or default)
    return (action, round(temperature, 4), round(top_p, 4), max_tokens_bucket(max_tokens))
