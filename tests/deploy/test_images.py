"""The images' build inputs: requirements before sources, a slim image without torch, non-root
stages with a health check, a build context of only what the images need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))

from requirements import requirements  # noqa: E402


def test_requirements_of_extras() -> None:
    slim = requirements(ROOT / "pyproject.toml", "")
    assert any(r.startswith("fastapi") for r in slim)
    assert not any(r.startswith("torch") for r in slim)
    worker = requirements(ROOT / "pyproject.toml", "worker")
    assert any(r.startswith("torch") for r in worker)
    with pytest.raises(SystemExit, match="unknown extras"):
        requirements(ROOT / "pyproject.toml", "gpu")


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "transformers", "tokenizers", "numpy"}:
            raise ImportError("not in the slim image: " + name)
sys.meta_path.insert(0, Block())
import api.main, api.app, api.rpc.server, mcp.webhooks.main, mcp.projector, mcp.replay, api.auth.cli
from mcp.settings import Settings
from workers.main import load_backend
settings = Settings(dev_mode=True)
load_backend(settings.model("echo"), settings)
print("slim ok")
"""


def test_slim_roles_need_no_torch() -> None:
    """The slim image (EXTRAS=) runs the API, gRPC, dispatcher, projector, replay and echo
    workers."""
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "slim ok" in done.stdout


def stages(dockerfile: str) -> dict[str, list[str]]:
    """Instructions of each stage, continuation lines joined."""
    joined = dockerfile.replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    current = ""
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            current = line.split()[-1]
            out[current] = []
        out.setdefault(current, []).append(line)
    return out


def test_dockerfile_stages() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    by_stage = stages(text)
    assert {"base", "slim-deps", "worker-deps", "slim", "worker"} <= set(by_stage)
    for final in ("slim", "worker"):
        lines = by_stage[final]
        assert any(line.startswith("USER 10001") for line in lines), final
        assert any(line.startswith("HEALTHCHECK") for line in lines), final
    # Dependencies come from pyproject.toml alone, before any source is copied.
    assert "COPY pyproject.toml deploy/requirements.py ./" in by_stage["base"]
    for deps in ("slim-deps", "worker-deps"):
        assert not any(line.startswith("COPY") for line in by_stage[deps])
    assert "ARG EXTRAS=" in by_stage["slim-deps"]
    assert any('"torch==$TORCH_VERSION"' in line for line in by_stage["worker-deps"])
    # Every COPY source is in the build context that .dockerignore lets through.
    allowed = {
        line.lstrip("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for lines in by_stage.values():
        for line in lines:
            if line.startswith("COPY"):
                for source in line.split()[1:-1]:
                    assert source in allowed, source
                    assert (ROOT / source).exists(), source
