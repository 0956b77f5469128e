"""`autoglm api --processes N`: N processes on one port, each in a slot of its own (its own
transactional.id), and a killed process comes back in the same slot."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.harness import Platform, wait_for, wait_statuses

pytestmark = pytest.mark.integration

BODY = {"model": "echo", "action": "generate", "payload": {"prompt": "hi"}}


def _slots(supervisor: int) -> dict[str, int]:
    """slot -> pid of the supervisor's live API processes."""
    found: dict[str, int] = {}
    for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile (a killed process not yet reaped, or reaped)
            continue
        for item in environ:
            if item.startswith(b"AUTOGLM_API_SLOT="):
                found[item.split(b"=", 1)[1].decode()] = int(pid)
    return found


def _submit(url: str, count: int) -> list[str]:
    """`count` submissions, each on a new connection, so both processes take some."""
    ids = []
    for _ in range(count):
        answer = httpx.post(f"{url}/v1/tasks", json=BODY, timeout=30)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["task_id"])
    return ids


def test_processes_have_slots_of_their_own_and_a_killed_one_comes_back(
    platform: Platform,
) -> None:
    api = platform._proc("api", ["api", "--port", str(platform.port), "--processes", "2"])
    platform.wait_ready(api)
    assert api.popen is not None
    wait_for(lambda: len(_slots(api.popen.pid)) == 2, 30, "two API processes")
    before = _slots(api.popen.pid)
    assert set(before) == {"0", "1"}
    # Processes sharing a transactional.id would fence each other: submissions would fail.
    first = _submit(platform.url, 30)

    os.kill(before["0"], signal.SIGKILL)
    wait_for(
        lambda: _slots(api.popen.pid).get("0") not in (None, before["0"]),
        30,
        "slot 0 started again",
    )
    platform.wait_ready(api)
    after = _slots(api.popen.pid)
    assert after["1"] == before["1"]
    second = _submit(platform.url, 30)

    platform.worker("echo", "0")
    with platform.client() as client:
        wait_statuses(client, first + second, {"succeeded"}, timeout=90)
