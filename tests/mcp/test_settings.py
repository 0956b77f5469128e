from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mcp.settings import ServerSettings, Settings


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


def test_published_and_placeholder_secrets_refused_outside_dev() -> None:
    published = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # was in config.example.yaml
    with pytest.raises(ValidationError, match="placeholder or published"):
        Settings(webhooks={"secrets": {"default": [published]}})
    with pytest.raises(ValidationError, match=r"auth\.api_keys"):
        Settings(auth={"enabled": True, "api_keys": {"changeme": "default"}})
    with pytest.raises(ValidationError, match="bootstrap_admin_key"):
        Settings(auth={"enabled": True, "bootstrap_admin_key": "changeme"})
    Settings(dev_mode=True, webhooks={"secrets": {"default": [published]}})


def test_shipped_example_has_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[2] / "deploy" / "config.example.yaml"
    monkeypatch.setenv("AUTOGLM_CONFIG", str(example))
    settings = Settings()
    assert settings.webhooks.secrets == {}
    assert settings.auth.jwt_secret is None and settings.auth.bootstrap_admin_key is None
    assert "whsec_" not in "".join(line.split("#")[0] for line in example.read_text().splitlines())


def test_refused_configuration_stops_the_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autoglm", "dispatcher"],
        cwd=Path(__file__).parents[2],
        env={**os.environ, "AUTOGLM_WEBHOOKS__SECRETS": '{"default": ["whsec_changeme"]}'},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78
    assert "configuration refused: webhook secret of project 'default'" in done.stderr
    assert "Traceback" not in done.stderr


def test_secret_env_merges_into_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Helm chart's shape: a ConfigMap file and AUTOGLM_* variables from a Secret."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "auth: {enabled: true, admin_project: ops}\n"
        "kafka: {bootstrap_servers: 'k:9092', client_config: {security.protocol: SASL_SSL}}\n"
    )
    monkeypatch.setenv("AUTOGLM_CONFIG", str(config))
    monkeypatch.setenv("AUTOGLM_AUTH__BOOTSTRAP_ADMIN_KEY", "agk_0123456789abcdef")
    monkeypatch.setenv("AUTOGLM_KAFKA__CLIENT_CONFIG", '{"sasl.password": "p"}')
    settings = Settings()
    assert settings.auth.enabled and settings.auth.admin_project == "ops"
    assert settings.auth.bootstrap_admin_key == "agk_0123456789abcdef"
    assert settings.kafka.bootstrap_servers == "k:9092"
    assert settings.kafka.client_config == {"security.protocol": "SASL_SSL", "sasl.password": "p"}


def test_example_config_states_every_admission_setting_at_its_default() -> None:
    example = Path(__file__).parents[2] / "deploy" / "config.example.yaml"
    server = yaml.safe_load(example.read_text())["server"]
    defaults = ServerSettings()
    names = [name for name in ServerSettings.model_fields if name.startswith("admission_")]
    assert names
    for name in names:
        assert name in server, f"deploy/config.example.yaml lacks server.{name}"
        assert server[name] == getattr(defaults, name), name
