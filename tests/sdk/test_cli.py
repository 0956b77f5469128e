"""The `autoglm` client commands against the real platform, run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.harness import ROOT, Platform

pytestmark = pytest.mark.integration


def autoglm(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTOGLM_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "autoglm", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_submit_wait_shows_progress_tokens_and_result(shared: Platform) -> None:
    run = autoglm(
        shared.url,
        *("submit", "--model", "glm-tiny", "--action", "generate", "--prompt", "Hi", "--wait"),
        *("--max-tokens", "8"),
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    task_id = re.match(r"task (\w+)\s+model glm-tiny\s+action generate", lines[0])
    assert task_id, run.stderr
    statuses = [m.group(2) for m in map(re.compile(r"\[\s*([\d.]+)s\] (\w+)").match, lines) if m]
    assert statuses[0] in ("queued", "running") and "succeeded" in statuses
    assert "running" in statuses and lines[-1].startswith("[") and "done: succeeded" in lines[-1]

    shown = autoglm(shared.url, "tasks", "get", task_id.group(1), "--json")
    assert shown.returncode == 0, shown.stderr
    task = json.loads(shown.stdout)
    assert task["status"] == "succeeded" and run.stdout.strip() == task["result"]["text"].strip()


def test_json_output_cancel_workers_and_errors(shared: Platform) -> None:
    done = autoglm(
        shared.url, "submit", "--model", "echo", "--payload", '{"n": 7}', "--wait", "--json"
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout)["result"] == {"echo": {"n": 7}}

    queued = autoglm(shared.url, "submit", "--model", "echo", "--payload", '{"sleep_ms": 2000}')
    task_id = queued.stdout.strip()
    cancelled = autoglm(shared.url, "tasks", "cancel", task_id, "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["task_id"] == task_id

    workers = autoglm(shared.url, "workers", "--json")
    assert {w["model"] for w in json.loads(workers.stdout)} == {"echo", "glm-tiny"}
    assert "echo" in autoglm(shared.url, "models").stdout

    missing = autoglm(shared.url, "tasks", "get", "nope")
    assert missing.returncode == 2 and "404 task_not_found" in missing.stderr
    unknown = autoglm(shared.url, "submit", "--model", "nope", "--prompt", "x")
    assert unknown.returncode == 2 and "unknown_model" in unknown.stderr
