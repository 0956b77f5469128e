"""A tiny random Glm4v checkpoint (the AutoGLM-Phone architecture) with its processor."""

from __future__ import annotations

import base64
import io
from pathlib import Path

IMAGE_TOKENS = [
    "<|image|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|video|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_glm4v(out: Path) -> Path:
    import torch
    from transformers import (
        AutoTokenizer,
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessor,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    from workers.backends.glm_tiny import build_glm_tiny

    build_glm_tiny(out / "text")
    tokenizer = AutoTokenizer.from_pretrained(out / "text", local_files_only=True)
    tokenizer.add_tokens(IMAGE_TOKENS, special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in IMAGE_TOKENS}
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
        tokenizer=tokenizer,
        video_processor=Glm4vVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
    config = Glm4vConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "pad_token_id": tokenizer.pad_token_id,
            "rope_parameters": {**rope, "partial_rotary_factor": 0.5},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "num_heads": 2,
            "intermediate_size": 64,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "image_size": 56,
        },
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
        architectures=["Glm4vForConditionalGeneration"],
    )
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target = out / "glm4v-tiny"
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def png_base64(width: int = 64, height: int = 96) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()
