"""glm-tiny is built deterministically, published atomically and loaded like a real checkpoint."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mcp.settings import Settings
from workers.backends import make_backend
from workers.backends.checkpoint import detect_kind
from workers.backends.glm_tiny import (
    MARKER_FILE,
    _is_current,
    _publish,
    build_glm_tiny,
    ensure_glm_tiny,
    glm_tiny_dir,
)
from workers.backends.transformers_backend import TransformersBackend


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_build_is_deterministic(tmp_path: Path) -> None:
    build_glm_tiny(tmp_path / "a")
    build_glm_tiny(tmp_path / "b")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER_FILE} <= set(first)
    assert first == second


def test_config_has_explicit_special_ids_inside_the_vocabulary(tmp_path: Path) -> None:
    build_glm_tiny(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["GlmForCausalLM"]
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 2
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        assert 0 <= config[key] < config["vocab_size"]


def test_concurrent_first_starts_publish_one_checkpoint(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: ensure_glm_tiny(tmp_path), range(2)))
    assert paths[0] == paths[1] == glm_tiny_dir(tmp_path)
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir()] == ["glm-tiny"]  # no staging left behind
    before = (paths[0] / "model.safetensors").stat().st_mtime_ns
    ensure_glm_tiny(tmp_path)  # already current: not rebuilt
    assert (paths[0] / "model.safetensors").stat().st_mtime_ns == before


def test_a_builder_that_loses_the_race_keeps_the_winner(tmp_path: Path) -> None:
    target = glm_tiny_dir(tmp_path)
    target.parent.mkdir(parents=True)
    winner, loser = target.parent / ".glm-tiny-a", target.parent / ".glm-tiny-b"
    build_glm_tiny(winner)
    build_glm_tiny(loser)
    _publish(winner, target)
    _publish(loser, target)  # the rename fails: the target is already a current build
    assert _is_current(target) and loser.exists() and not winner.exists()


def test_older_recipe_is_replaced(tmp_path: Path) -> None:
    target = ensure_glm_tiny(tmp_path)
    (target / MARKER_FILE).write_text(json.dumps({"recipe": 0}))
    assert ensure_glm_tiny(tmp_path) == target
    assert json.loads((target / MARKER_FILE).read_text())["recipe"] != 0


def test_loads_through_the_transformers_path(
    glm_tiny: TransformersBackend, backend_settings: Settings
) -> None:
    checkpoint = glm_tiny.checkpoint
    assert checkpoint.path == glm_tiny_dir(backend_settings.cache_dir)
    assert type(checkpoint.model).__name__ == "GlmForCausalLM"
    assert detect_kind(checkpoint.model.config) == "causal_lm"
    assert checkpoint.has_chat_template
    assert checkpoint.device.type in ("cpu", "cuda")
    assert checkpoint.tokenizer.pad_token_id == checkpoint.model.config.pad_token_id


def test_an_explicit_path_to_the_same_files_loads_identically(
    glm_tiny: TransformersBackend, backend_settings: Settings
) -> None:
    spec = backend_settings.model("glm-tiny")
    assert spec is not None
    explicit = spec.model_copy(
        update={"name": "local", "builtin": False, "path": str(glm_tiny.checkpoint.path)}
    )
    backend = make_backend(explicit, backend_settings)
    backend.load()
    assert isinstance(backend, TransformersBackend)
    for name, tensor in glm_tiny.checkpoint.model.state_dict().items():
        assert backend.checkpoint.model.state_dict()[name].equal(tensor)
