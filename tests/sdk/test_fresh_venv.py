"""The SDK on its own: a fresh virtualenv with only `pip install ./sdk` (plus uvicorn to serve
the webhook receiver) runs the quick start against the real platform."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, Platform, free_port
from tests.mcp.webhooks.conftest import SECRET

pytestmark = pytest.mark.integration

SDK = ROOT / "sdk"
SCRIPTS = Path(__file__).parent / "scripts"
CACHE = Path.home() / ".cache" / "autoglm-mcp"


def _sdk_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(SDK.rglob("*")):
        if path.is_file() and "egg-info" not in str(path) and "__pycache__" not in str(path):
            digest.update(str(path.relative_to(SDK)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """A virtualenv holding the SDK as users install it, rebuilt when the SDK's files change."""
    venv = CACHE / f"sdk-venv-{_sdk_digest()}"
    python = venv / "bin" / "python"
    if not python.exists():
        building = venv.with_name(venv.name + f".{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, str(SDK), "uvicorn"], check=True, cwd=ROOT)
        shutil.rmtree(venv, ignore_errors=True)
        building.rename(venv)
        # A venv's scripts name its own path; a moved venv runs its python directly, fine here.
    return python


def _run(python: Path, script: str, url: str, *args: str) -> dict[str, object]:
    env = {"PATH": os.environ.get("PATH", ""), "AUTOGLM_URL": url, "HOME": str(Path.home())}
    done = subprocess.run(
        [str(python), str(SCRIPTS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_venv_holds_the_sdk_and_no_platform(sdk_python: Path) -> None:
    listed = subprocess.run(
        [str(sdk_python), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"autoglm-client", "httpx", "pydantic"} <= names
    assert not names & {"autoglm-mcp", "confluent-kafka", "fastapi", "redis", "torch"}


def test_quickstart_streams_and_waits(sdk_python: Path, shared: Platform) -> None:
    done = _run(sdk_python, "quickstart.py", shared.url)
    assert done["status"] == "succeeded" and done["model"] == "glm-tiny"
    assert isinstance(done["result"], dict) and done["result"]["text"]


def test_receiver_verifies_and_deduplicates_a_redelivery(
    sdk_python: Path, shared: Platform
) -> None:
    seen = _run(sdk_python, "receiver.py", shared.url, SECRET, str(free_port()))
    assert seen["handled"] == 1 and seen["duplicates"] == 1
    assert seen["rejected"] == 1 and seen["forged_status"] == 401
    [[webhook_id, kind, task_id, result]] = seen["events"]  # type: ignore[misc]
    assert kind == "task.succeeded" and task_id == seen["task_id"]
    assert result == {"echo": {"hello": "webhook"}} and webhook_id
