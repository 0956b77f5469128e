"""Image + text generation (Glm4v, the AutoGLM-Phone architecture) through the model's processor.

Vision checkpoints place image tokens and multimodal positions themselves, so each task runs
through `model.generate` on its own; streaming and cancellation hook into that loop.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mcp.errors import BackendError, InvalidPayload
from workers.backends.checkpoint import Checkpoint
from workers.backends.generation import GenerationOutput, GenerationRequest


def decode_png(data: str) -> Any:
    """A PIL image from base64 (a `data:` URL prefix is tolerated)."""
    from PIL import Image

    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=False)))
        return image.convert("RGB")
    except Exception as exc:
        raise InvalidPayload(f"screenshot is not a readable base64 image: {exc}") from exc


def hf_image_part(data: str) -> dict[str, Any]:
    return {"type": "image", "image": decode_png(data)}


def _processor_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        converted.append({"role": message["role"], "content": list(content)})
    return converted


class _DeltaStreamer:
    """Receives new token ids from `generate` and forwards the text they add."""

    def __init__(self, tokenizer: Any, request: GenerationRequest) -> None:
        self.tokenizer = tokenizer
        self.request = request
        self.prompt_seen = False
        self.token_ids: list[int] = []
        self.emitted = 0

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True  # generate() first hands over the prompt itself
            return
        self.token_ids.extend(int(t) for t in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.token_ids, skip_special_tokens=True).rstrip("\ufffd")
        if self.request.on_token is not None and len(text) > self.emitted:
            self.request.on_token(text[self.emitted :])
            self.emitted = len(text)

    def end(self) -> None:
        pass


class _StopWhenCancelled:
    def __init__(self, request: GenerationRequest) -> None:
        self.request = request

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        done = self.request.cancelled()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def generate_with_processor(
    checkpoint: Checkpoint, messages: Sequence[Mapping[str, Any]], request: GenerationRequest
) -> GenerationOutput:
    from transformers import StoppingCriteriaList

    if checkpoint.processor is None:
        raise BackendError("this vision checkpoint has no processor")
    inputs = checkpoint.processor.apply_chat_template(
        _processor_messages(messages),
        tokenize=True,
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    ).to(checkpoint.device)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    sampling: dict[str, Any] = {"do_sample": request.temperature > 0}
    if request.temperature > 0:
        sampling.update(temperature=request.temperature, top_p=request.top_p)
        if request.seed is not None:
            torch.manual_seed(request.seed)
    streamer = _DeltaStreamer(checkpoint.tokenizer, request) if request.on_token else None
    with torch.inference_mode():
        output = checkpoint.model.generate(
            **inputs,
            max_new_tokens=request.max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopWhenCancelled(request)]),
            stop_strings=request.stop or None,
            tokenizer=checkpoint.tokenizer if request.stop else None,
            **sampling,
        )
    new_ids = output[0, prompt_tokens:].tolist()
    text = checkpoint.tokenizer.decode(new_ids, skip_special_tokens=True)
    cut = [i for i in (text.find(s) for s in request.stop if s) if i >= 0]
    if cut:
        text = text[: min(cut)]
    if request.cancelled():
        reason = "cancelled"
    elif cut or (new_ids and new_ids[-1] in checkpoint.stop_token_ids):
        reason = "stop"
    else:
        reason = "length" if len(new_ids) >= request.max_new_tokens else "stop"
    if (
        streamer is not None
        and len(text) > streamer.emitted
        and text.startswith(text[: streamer.emitted])
    ):
        request.on_token(text[streamer.emitted :])  # type: ignore[misc]
    return GenerationOutput(text, reason, prompt_tokens, len(new_ids))  # type: ignore[arg-type]
