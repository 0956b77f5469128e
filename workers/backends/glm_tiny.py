"""The built-in `glm-tiny` checkpoint: a tiny random GLM and a byte-level BPE tokenizer.

It is built on first start into `<cache_dir>/models/glm-tiny/` and then loaded like any
other local checkpoint, so the test suite exercises the real transformers path offline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

RECIPE_VERSION = 1
MARKER_FILE = "autoglm-build.json"
PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
VOCAB_SIZE = 640
SEED = 1234
# Weights come from torch's global generator: two builds in one process must not interleave.
_BUILD_LOCK = threading.RLock()

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|eos|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you today?",
    "GLM is a family of general language models.",
    "A phone agent reads the screen and decides the next action.",
    "Open the settings app and turn on dark mode.",
    "Search for a coffee shop nearby and show the opening hours.",
    "Send a message to Alice saying I will be late.",
    "The weather is sunny with a light breeze in the afternoon.",
    "Tasks are queued in Kafka and processed by GPU workers.",
    "Results are delivered to a webhook with a signature.",
    "Embeddings map sentences to vectors; similar sentences are close.",
    "Classify the sentiment of this review: positive or negative.",
    "I love this product, it works great and arrived early.",
    "This was a terrible experience and I want a refund.",
    "<think>The search box is at the top of the screen.</think>"
    '<answer>do(action="Tap", element=[500, 120])</answer>',
    '<think>Type the query.</think><answer>do(action="Type", text="coffee")</answer>',
    "<think>Scroll down to see more.</think>"
    '<answer>do(action="Swipe", start=[500, 800], end=[500, 200])</answer>',
    '<answer>do(action="Launch", app="Settings")</answer>',
    '<answer>do(action="Back")</answer> <answer>do(action="Home")</answer>',
    '<answer>finish(message="Done.")</answer>',
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 [x, y] {key: value}",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-_/",
]


def glm_tiny_dir(cache_dir: str | os.PathLike[str]) -> Path:
    return Path(cache_dir) / "models" / "glm-tiny"


def ensure_glm_tiny(cache_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint directory, built first if missing or from an older recipe."""
    target = glm_tiny_dir(cache_dir)
    if _is_current(target):
        return target
    with _BUILD_LOCK:
        if _is_current(target):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".glm-tiny-", dir=target.parent))
        try:
            build_glm_tiny(staging)
            _publish(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def build_glm_tiny(out_dir: str | os.PathLike[str]) -> None:
    """Write tokenizer, config and seeded random weights to `out_dir` (deterministic)."""
    with _BUILD_LOCK:
        _build(Path(out_dir))


def _build(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, GlmConfig, GlmForCausalLM

    tokenizer = _train_tokenizer()
    tokenizer.save_pretrained(out)
    config = GlmConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        # Wider than the default so that greedy choices are clear-cut, not near-ties.
        initializer_range=0.1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        architectures=["GlmForCausalLM"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = GlmForCausalLM(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.save_pretrained(out)
    (out / MARKER_FILE).write_text(json.dumps({"recipe": RECIPE_VERSION, "seed": SEED}))


def _train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = byte_level
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[PAD, BOS, EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=ROLE_TOKENS,
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def _is_current(path: Path) -> bool:
    try:
        marker = json.loads((path / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker.get("recipe") == RECIPE_VERSION)


def _publish(staging: Path, target: Path) -> None:
    """Move a finished build into place; a concurrent builder that won first is fine."""
    if target.exists() and not _is_current(target):
        stale = target.with_name(f".glm-tiny-stale-{os.getpid()}")
        try:
            target.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass  # another process is replacing it at the same moment
    try:
        staging.rename(target)
    except OSError:
        if not _is_current(target):
            raise
