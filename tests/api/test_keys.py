"""Managed API keys across API processes, the `autoglm keys` CLI, quotas, metrics exposure."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import orjson

from tests.harness import ROOT, Platform, free_port, submit, wait_for, wait_statuses

BOOT = "bootstrap-admin-key-for-tests"
ENV = {"AUTOGLM_AUTH__ENABLED": "true", "AUTOGLM_AUTH__BOOTSTRAP_ADMIN_KEY": BOOT}
ECHO = {"model": "echo", "action": "generate", "payload": {"prompt": "hi"}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli(platform: Platform, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "autoglm", "keys", "--url", platform.url, "--token", BOOT, *args],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    body: dict[str, Any] = orjson.loads(done.stdout)
    return body


def until_status(url: str, token: str, status: int, timeout: float = 10) -> float:
    """Seconds until GET /v1/models with `token` answers `status`."""
    started = time.monotonic()

    def check() -> bool:
        return httpx.get(f"{url}/v1/models", headers=bearer(token)).status_code == status

    wait_for(check, timeout, f"{status} at {url}", interval=0.01)
    return time.monotonic() - started


def test_keys_reach_every_api_process_within_a_second(platform: Platform) -> None:
    first = platform.variant()
    second = platform.variant()
    first.api(**ENV, AUTOGLM_INSTANCE_ID="api-1")
    second.api(**ENV, AUTOGLM_INSTANCE_ID="api-2")

    created = cli(first, "create", "--project", "alpha", "--role", "developer", "--name", "ci")
    token, key_id = created["key"], created["key_id"]
    assert token.startswith("agk_") and created["prefix"] in token
    assert until_status(second.url, token, 200) < 1.0

    listed = cli(second, "list", "--project", "alpha")["keys"]
    assert [k["key_id"] for k in listed] == [key_id]
    assert "key" not in listed[0] and "secret_sha256" not in listed[0]
    assert listed[0]["status"] == "active" and listed[0]["created_by"] == "bootstrap"

    keeper = cli(first, "create", "--project", "alpha", "--role", "viewer")["key"]
    assert cli(first, "revoke", key_id)["status"] == "revoked"
    assert until_status(second.url, token, 401) < 1.0
    assert cli(second, "revoke", key_id)["status"] == "revoked"  # idempotent

    # Durable in Kafka: a restarted process knows every key, revoked ones included.
    second.procs[-1].kill()
    second.api(**ENV, AUTOGLM_INSTANCE_ID="api-2")
    assert httpx.get(f"{second.url}/v1/models", headers=bearer(keeper)).status_code == 200
    assert httpx.get(f"{second.url}/v1/models", headers=bearer(token)).status_code == 401

    short = cli(first, "create", "--project", "alpha", "--role", "viewer", "--expires-in", "2")
    assert until_status(second.url, short["key"], 200) < 1.0
    until_status(second.url, short["key"], 401, timeout=5)
    listed = {k["key_id"]: k["status"] for k in cli(first, "list")["keys"]}
    assert listed[short["key_id"]] == "expired" and listed[key_id] == "revoked"

    with httpx.Client(base_url=first.url) as client:
        wrong = client.post(
            "/v1/keys", json={"project": "a b", "role": "root"}, headers=bearer(BOOT)
        )
        assert wrong.status_code == 422
        forever = {"project": "a", "role": "viewer", "expires_in_s": 68_960_261_193_574}
        assert client.post("/v1/keys", json=forever, headers=bearer(BOOT)).status_code == 422
        missing = client.delete("/v1/keys/nope", headers=bearer(BOOT))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"


def test_quota_of_active_tasks_and_body_size(platform: Platform) -> None:
    quotas = {"projects": {"alpha": {"max_active": 2, "max_body_bytes": 2000}}}
    platform.api(
        AUTOGLM_AUTH__ENABLED="true",
        AUTOGLM_AUTH__API_KEYS='{"ka": "alpha", "kb": "beta"}',
        AUTOGLM_QUOTAS=orjson.dumps(quotas).decode(),
    )
    alpha, beta = bearer("ka"), bearer("kb")
    with platform.client() as client:
        first = [submit(client, ECHO, **alpha) for _ in range(2)]
        assert [r.status_code for r in first] == [202, 202]
        refused = submit(client, ECHO, **alpha)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
        assert submit(client, ECHO, **beta).status_code == 202

        big = {**ECHO, "payload": {"prompt": "x" * 3000}}
        too_big = submit(client, big, **alpha)
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
        assert submit(client, big, **beta).status_code == 202

        # Finished tasks give their places back.
        platform.worker("echo")
        with httpx.Client(base_url=platform.url, headers=alpha) as reader:
            wait_statuses(reader, [r.json()["task_id"] for r in first], {"succeeded"})
        again = submit(client, ECHO, **alpha)
        assert again.status_code == 202, again.text


def test_metrics_behind_a_token_or_on_their_own_port(platform: Platform) -> None:
    platform.api(**ENV)
    with platform.client() as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/v1/workers", headers=bearer("forged")).status_code == 401
        shown = client.get("/metrics", headers=bearer(BOOT))
        assert shown.status_code == 200
        assert 'autoglm_auth_failures_total{reason="unknown_key"}' in shown.text
        assert "autoglm_tasks_submitted_total" in shown.text

    port = free_port()
    own = platform.variant()
    own.api(**ENV, AUTOGLM_AUTH__METRICS="port", AUTOGLM_AUTH__METRICS_PORT=str(port))
    assert httpx.get(f"{own.url}/metrics", headers=bearer(BOOT)).status_code == 404
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200 and "autoglm_submit_seconds" in scraped.text
