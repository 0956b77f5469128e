"""Turning payloads into token ids: chat templates, raw prompts and padding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from workers.backends.checkpoint import Checkpoint


def message_text(content: Any) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    parts = [
        str(part.get("text", ""))
        for part in content or []
        if isinstance(part, Mapping) and part.get("type", "text") == "text"
    ]
    return "\n".join(parts)


def text_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"role": str(m["role"]), "content": message_text(m["content"])} for m in messages]


def chat_ids(checkpoint: Checkpoint, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """Token ids of a conversation ready for the assistant's turn."""
    plain = text_messages(messages)
    tokenizer = checkpoint.tokenizer
    if checkpoint.has_chat_template:
        text = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    lines = [f"{m['role']}: {m['content']}" for m in plain]
    return list(tokenizer("\n".join([*lines, "assistant:"]))["input_ids"])


def prompt_ids(checkpoint: Checkpoint, prompt: str) -> list[int]:
    """A prompt goes through the chat template when the checkpoint ships one (instruct models)."""
    if checkpoint.has_chat_template:
        return chat_ids(checkpoint, [{"role": "user", "content": prompt}])
    return list(checkpoint.tokenizer(prompt)["input_ids"])


def plain_ids(checkpoint: Checkpoint, text: str, max_length: int | None = None) -> list[int]:
    """Token ids of a text as the tokenizer frames it; never empty."""
    ids = list(checkpoint.tokenizer(text)["input_ids"])
    if max_length is not None:
        ids = ids[:max_length]
    return ids or [checkpoint.pad_token_id]


def pad_right(
    rows: Sequence[Sequence[int]], pad_id: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with padding after each row, so positions start at zero."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([list(r) + [pad_id] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return ids, mask


def max_input_tokens(checkpoint: Checkpoint) -> int:
    limits = [checkpoint.max_positions or 0, getattr(checkpoint.tokenizer, "model_max_length", 0)]
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    return min(usable) if usable else 512
