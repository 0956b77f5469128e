"""Batched token generation over the KV cache, with per-row stop strings, streaming and cancel.

Prompts are left-padded so that every row's next token sits in the last column. Rows leave
the batch (and the cache) as soon as they finish, so one long answer does not make the
others pay for padding, and each row keeps its own sampler so that a seeded request gives
the same text whether it ran alone or in a batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from workers.backends.checkpoint import Checkpoint

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    on_token: Callable[[str], None] | None = None
    cancelled: Callable[[], bool] = lambda: False


@dataclass
class GenerationOutput:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class _Row:
    """Decoding state of one request."""

    def __init__(self, request: GenerationRequest, device: torch.device) -> None:
        self.request = request
        self.token_ids: list[int] = []
        self.completion_tokens = 0
        self.text = ""
        self.emitted = 0
        self.finish_reason: FinishReason | None = None
        self.generator: torch.Generator | None = None
        if request.temperature > 0:
            self.generator = torch.Generator(device=device)
            if request.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(request.seed)

    def accept(self, token_id: int, stop_ids: set[int], decode: Callable[[list[int]], str]) -> None:
        self.completion_tokens += 1
        if token_id in stop_ids:
            self.finish("stop")
            return
        self.token_ids.append(token_id)
        self.text = decode(self.token_ids)
        cut = _first_stop(self.text, self.request.stop)
        if cut is not None:
            self.text = self.text[:cut]
            self.finish("stop")
        elif self.completion_tokens >= self.request.max_new_tokens:
            self.finish("length")
        else:
            self._stream(self.text[: len(self.text) - _held_back(self.text, self.request.stop)])

    def finish(self, reason: FinishReason) -> None:
        self.finish_reason = reason
        if reason != "cancelled":
            self._stream(self.text)

    def _stream(self, ready: str) -> None:
        if self.request.on_token is not None and len(ready) > self.emitted:
            delta = ready[self.emitted :]
            self.emitted = len(ready)
            self.request.on_token(delta)

    def output(self, prompt_tokens: int) -> GenerationOutput:
        assert self.finish_reason is not None
        return GenerationOutput(
            self.text, self.finish_reason, prompt_tokens, self.completion_tokens
        )


def generate_batch(
    checkpoint: Checkpoint, requests: list[GenerationRequest]
) -> list[GenerationOutput]:
    """Generate for all requests at once; outputs are in request order."""
    device = checkpoint.device
    rows = [_Row(request, device) for request in requests]
    prompts = [_fit_prompt(checkpoint, r) for r in requests]

    def decode(ids: list[int]) -> str:
        return str(checkpoint.tokenizer.decode(ids, skip_special_tokens=True))

    stop_ids = checkpoint.stop_token_ids
    width = max(len(p) for p in prompts)
    pad = checkpoint.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    active = list(range(len(rows)))
    cache_kwarg = _cache_kwarg(checkpoint.model)

    with torch.inference_mode():
        out = checkpoint.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.cache if cache_kwarg == "cache" else out.past_key_values
        next_position = positions[:, -1:] + 1
        while True:
            tokens = _choose_tokens(out.logits[:, -1, :].float(), [rows[i] for i in active])
            # One device-to-host copy a step, not one per row: on a GPU each is a synchronisation.
            chosen = tokens.tolist()
            for slot, index in enumerate(active):
                row = rows[index]
                if row.request.cancelled():
                    row.finish("cancelled")
                else:
                    row.accept(chosen[slot], stop_ids, decode)
            keep = [slot for slot, index in enumerate(active) if rows[index].finish_reason is None]
            if not keep:
                break
            if len(keep) < len(active):
                kept = torch.tensor(keep, device=device)
                cache.batch_select_indices(kept)
                mask, next_position, tokens = mask[kept], next_position[kept], tokens[kept]
                active = [active[slot] for slot in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
            out = checkpoint.model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_position,
                use_cache=True,
                **{cache_kwarg: cache},
            )
            next_position = next_position + 1
    return [row.output(len(prompt)) for row, prompt in zip(rows, prompts, strict=True)]


def _cache_kwarg(model: Any) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; accept both releases."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _fit_prompt(checkpoint: Checkpoint, request: GenerationRequest) -> list[int]:
    """The prompt, cut from the left if prompt plus answer would not fit the context."""
    ids = list(request.prompt_ids) or [checkpoint.tokenizer.bos_token_id or checkpoint.pad_token_id]
    limit = checkpoint.max_positions
    if limit is not None and len(ids) + request.max_new_tokens > limit:
        ids = ids[-max(1, limit - request.max_new_tokens) :]
    return ids


def _choose_tokens(logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
    chosen = logits.argmax(dim=-1)
    for slot, row in enumerate(rows):
        if row.generator is not None:
            chosen[slot] = _sample(logits[slot], row.request, row.generator)
    return chosen


def _sample(logits: torch.Tensor, request: GenerationRequest, generator: Any) -> torch.Tensor:
    probs = torch.softmax(logits / request.temperature, dim=-1)
    if request.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > request.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)[0]


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters may still turn into a stop string or a whole character."""
    held = len(text) - len(text.rstrip("\ufffd"))
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                held = max(held, size)
                break
    return held
