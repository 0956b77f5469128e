"""deploy/docker-compose.yml: each slot once, and its services' commands start as processes."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mcp.settings import Settings
from tests.harness import Platform, Proc, wait_for, wait_statuses

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))

from compose_check import check, command_of  # noqa: E402


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    return loaded


def test_every_slot_once_and_not_scalable() -> None:
    assert check(compose(), {}) == []
    doubled = copy.deepcopy(compose())
    doubled["services"]["worker-echo-9"] = copy.deepcopy(doubled["services"]["worker-echo-1"])
    doubled["services"]["worker-echo-9"]["container_name"] = "autoglm-worker-echo-9"
    del doubled["services"]["dispatcher-0"]["container_name"]
    doubled["services"]["kafka"]["volumes"] = []
    problems = check(doubled, {})
    assert any("share ('worker', 'echo', '1')" in p for p in problems)
    assert any(p.startswith("dispatcher-0: no container_name") for p in problems)
    assert any(p.startswith("kafka: its data") for p in problems)


def healthcheck(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py"), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
def test_compose_services_run_as_processes(
    platform: Platform, settings: Settings, tmp_path: Path
) -> None:
    """Every platform service but the torch worker, started with its compose command and
    environment (hosts mapped to the test's Kafka and Redis): an echo task runs, both echo
    slots are live workers, and the image's health check tells a live worker from a stopped one."""
    hosts = {
        "kafka:9092": settings.kafka.bootstrap_servers,
        "redis://redis:6379/0": settings.redis.url,
        "/blobs": str(tmp_path / "blobs"),
    }
    procs: dict[str, Proc] = {}
    for name, service in compose()["services"].items():
        command = command_of(service)
        if (
            not command
            or "glm-tiny" in command
            or command[0] not in ("api", "worker", "dispatcher")
        ):
            continue
        env = {k: hosts.get(str(v), str(v)) for k, v in service["environment"].items()}
        if command[0] == "api":
            command = [*command, "--port", str(platform.port)]  # 8000 may be taken here
        procs[name] = platform._proc(name, command, **env)
    assert set(procs) == {"api", "worker-echo-0", "worker-echo-1", "dispatcher-0"}
    platform.wait_ready(procs["api"], timeout=90)
    with platform.client() as client:
        wait_for(lambda: len(client.get("/v1/workers").json()["workers"]) == 2, 90, "2 workers")
        workers = client.get("/v1/workers").json()["workers"]
        assert sorted(w["worker_id"] for w in workers) == ["echo.0", "echo.1"]
        task = client.post(
            "/v1/tasks", json={"model": "echo", "action": "generate", "payload": {"prompt": "hi"}}
        )
        assert task.status_code == 202, task.text
        done = wait_statuses(client, [task.json()["task_id"]], {"succeeded", "failed"}, 60)
        assert done[task.json()["task_id"]]["status"] == "succeeded"
    env = platform.env
    assert healthcheck("api", "--port", str(platform.port), env=env).returncode == 0
    assert healthcheck("worker", "--model", "echo", "--slot", "1", env=env).returncode == 0
    stopping = procs["worker-echo-1"]
    assert stopping.terminate() == 0, stopping.log()[-6000:]  # a clean stop removes its heartbeat
    stopped = healthcheck("worker", "--model", "echo", "--slot", "1", env=env)
    assert stopped.returncode == 1, stopped.stdout
    assert healthcheck("worker", "--model", "echo", "--slot", "0", env=env).returncode == 0
    assert all(p.alive for n, p in procs.items() if n != "worker-echo-1")
    httpx.get(f"{platform.url}/healthz", timeout=5).raise_for_status()
