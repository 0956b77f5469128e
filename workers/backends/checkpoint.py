"""Loading a local checkpoint with the transformers Auto classes, never touching the network."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mcp.errors import ModelLoadError
from mcp.settings import ModelSpec, Settings

ModelKind = Literal["causal_lm", "vision_lm", "sequence_classifier", "encoder"]

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def force_offline() -> None:
    """Make the Hugging Face libraries refuse any download in this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Checkpoint:
    """A loaded model with what is needed to feed it."""

    model: Any
    tokenizer: Any
    processor: Any | None
    kind: ModelKind
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    path: Path

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def stop_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(int(v) for v in value)
        return ids

    @property
    def pad_token_id(self) -> int:
        for value in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                return value
        return 0

    @property
    def max_positions(self) -> int | None:
        config = getattr(self.model.config, "text_config", None) or self.model.config
        value = getattr(config, "max_position_embeddings", None)
        return int(value) if isinstance(value, int) else None


def resolve_path(spec: ModelSpec, settings: Settings) -> tuple[Path, str | None]:
    """(checkpoint directory, GGUF file name or None); builds glm-tiny when asked for."""
    if spec.path is None:
        if spec.builtin and spec.name == "glm-tiny":
            from workers.backends.glm_tiny import ensure_glm_tiny

            return ensure_glm_tiny(settings.cache_dir), None
        raise ModelLoadError(f"model {spec.name!r} has no checkpoint path")
    path = Path(spec.path).expanduser()
    if path.suffix == ".gguf":
        return path.parent, path.name
    return path, None


def pick_device_and_dtype(spec: ModelSpec) -> tuple[Any, Any]:
    import torch

    if spec.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(spec.device)
    if spec.dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif spec.dtype.lower() in DTYPES:
        dtype = getattr(torch, DTYPES[spec.dtype.lower()])
    else:
        raise ModelLoadError(f"model {spec.name!r}: unknown dtype {spec.dtype!r}")
    return device, dtype


def load_checkpoint(spec: ModelSpec, settings: Settings) -> Checkpoint:
    force_offline()
    path, gguf_file = resolve_path(spec, settings)
    if not path.is_dir():
        raise ModelLoadError(f"model {spec.name!r}: checkpoint directory {path} does not exist")
    device, dtype = pick_device_and_dtype(spec)
    try:
        return _load(path, gguf_file, device, dtype)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: cannot load {path}: {exc}", {"path": str(path)}
        ) from exc


def _load(path: Path, gguf_file: str | None, device: Any, dtype: Any) -> Checkpoint:
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    common: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        common["gguf_file"] = gguf_file
    config = AutoConfig.from_pretrained(path, **common)
    kind = detect_kind(config)
    model_class = {
        "causal_lm": transformers.AutoModelForCausalLM,
        "vision_lm": transformers.AutoModelForImageTextToText,
        "sequence_classifier": transformers.AutoModelForSequenceClassification,
        "encoder": transformers.AutoModel,
    }[kind]
    processor = None
    if kind == "vision_lm":
        processor = transformers.AutoProcessor.from_pretrained(path, **common)  # type: ignore[no-untyped-call]
        tokenizer = processor.tokenizer
    else:
        tokenizer = AutoTokenizer.from_pretrained(path, **common)
    model = model_class.from_pretrained(path, dtype=dtype, **common)
    model.to(device)
    model.eval()
    return Checkpoint(model, tokenizer, processor, kind, device, dtype, path)


def detect_kind(config: Any) -> ModelKind:
    architectures = list(getattr(config, "architectures", None) or [])
    if getattr(config, "vision_config", None) is not None or any(
        a.endswith(("ForConditionalGeneration", "ForImageTextToText")) for a in architectures
    ):
        return "vision_lm"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "sequence_classifier"
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "causal_lm"
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not architectures and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal_lm"
    return "encoder"
