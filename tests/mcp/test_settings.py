from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mcp.settings import Settings


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: yaml:9092\n  partitions: 7\nserver:\n  port: 9000\n"
    )
    monkeypatch.setenv("AUTOGLM_CONFIG", str(config))
    monkeypatch.setenv("AUTOGLM_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "env:9092"
    assert settings.kafka.partitions == 7
    assert settings.server.port == 9000


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[2] / "deploy" / "config.example.yaml"
    monkeypatch.setenv("AUTOGLM_CONFIG", str(example))
    settings = Settings()
    assert settings.model("glm-tiny") is not None


def test_placeholder_secret_refused_outside_dev() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(webhooks={"secrets": {"default": ["whsec_changeme"]}})
    Settings(dev_mode=True, webhooks={"secrets": {"default": ["whsec_changeme"]}})


def test_unknown_default_model_refused() -> None:
    with pytest.raises(ValidationError, match="default_model"):
        Settings(default_model="nope")


def test_min_insync_replicas_within_replication_factor() -> None:
    kafka = {"replication_factor": 3, "min_insync_replicas": 2}
    assert Settings.model_validate({"kafka": kafka}).kafka.min_insync_replicas == 2
    for wrong in (0, 4):
        with pytest.raises(ValidationError, match="min_insync_replicas"):
            Settings.model_validate({"kafka": {**kafka, "min_insync_replicas": wrong}})
