"""The OpenAPI document is exact: every route declares the statuses it can answer with the error
body (checked here for every route, including routes added later), and schemathesis with all
its checks finds nothing against the real running API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from mcp.settings import ConfiguredKey, Settings
from tests.harness import ROOT, Platform

ERROR_REF = "#/components/schemas/ErrorBody"
HERE = Path(__file__).parent
# Routes that answer whoever asks: no credentials, no task store.
PUBLIC = {"GET /healthz", "GET /readyz", "GET /metrics"}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    document = create_app(Settings(dev_mode=True)).openapi()
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


def required_statuses(method: str, path: str, op: dict[str, Any]) -> set[str]:
    """What any route of this shape can answer, whatever its handler does."""
    needed: set[str] = set()
    params = op.get("parameters", [])
    if "requestBody" in op:
        needed |= {"400", "413", "422"}
    if any(p["in"] == "path" for p in params):
        needed |= {"404", "422"}
    if params:
        needed.add("422")
    if path.startswith("/v1/"):
        needed |= {"401", "503"} if f"{method} {path}" != "GET /v1/models" else {"401"}
    return needed


@pytest.mark.parametrize(("method", "path", "op"), operations(), ids=lambda v: str(v)[:40])
def test_every_route_declares_its_error_statuses(
    method: str, path: str, op: dict[str, Any]
) -> None:
    responses = op["responses"]
    missing = required_statuses(method, path, op) - set(responses)
    assert not missing, f"{method} {path} does not declare {sorted(missing)} (see api/contract.py)"
    for status, response in responses.items():
        if status[0] in "45" and f"{method} {path}" not in PUBLIC:
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            assert schema == {"$ref": ERROR_REF}, f"{method} {path} {status}: not the error body"
    assert any(s.startswith("2") for s in responses), f"{method} {path}: no success answer"


def test_submit_schema_names_the_models_and_their_payloads() -> None:
    document = create_app(Settings(dev_mode=True)).openapi()
    branches = document["components"]["schemas"]["SubmitRequest"]["oneOf"]
    generate = next(b for b in branches if b["properties"]["action"]["enum"] == ["generate"])
    assert "glm-tiny" in generate["properties"]["model"]["enum"]
    assert "echo" not in generate["properties"]["model"]["enum"]
    assert "payload" in generate["required"]
    echo = next(b for b in branches if b["properties"]["model"]["enum"] == ["echo"])
    assert echo["properties"]["payload"] == {"type": "object"}


def schemathesis(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            *("--config-file", str(HERE / "schemathesis.toml")),
            *("run", f"{url}/openapi.json", "--checks", "all", "--no-color"),
            *("--request-timeout", "20", "--max-examples", "10", "--seed", "1"),
            *("--header", f"Authorization: Bearer {ADMIN_KEY}"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        cwd=ROOT,
    )


ADMIN_KEY = "contract-test-admin-key-8d1f0c5e2b7a4e69"


@pytest.mark.integration
def test_schemathesis_finds_nothing(platform: Platform) -> None:
    # Auth on, as in production: schemathesis also checks that every route which declares
    # security refuses a missing or broken credential.
    admin = ConfiguredKey(project="default", role="admin")
    platform = platform.variant(auth={"enabled": True, "api_keys": {ADMIN_KEY: admin}})
    platform.api()
    platform.worker("echo", "0")
    # The event stream of a task that no worker runs never ends: the stateful phase (which
    # follows links from created tasks) leaves it out; the other phases cover it below.
    stream = "/v1/tasks/{task_id}/stream"
    everything = schemathesis(platform.url, "--exclude-path", stream)
    assert everything.returncode == 0, everything.stdout[-6000:] + everything.stderr[-2000:]
    streams = schemathesis(
        platform.url, "--include-path", stream, "--phases", "examples,coverage,fuzzing"
    )
    assert streams.returncode == 0, streams.stdout[-6000:] + streams.stderr[-2000:]
