"""A worker whose slot a newer instance takes says so in one line and exits with its own
status; the newcomer runs the tasks."""

from __future__ import annotations

import pytest

from tests.harness import Platform, submit_echo, wait_for, wait_statuses
from workers.slot import FENCED_EXIT

pytestmark = pytest.mark.integration


def test_a_worker_whose_slot_is_taken_over_exits_with_one_line(platform: Platform) -> None:
    platform.api()
    old = platform.worker("echo", "0")
    new = platform.worker("echo", "0")
    wait_for(lambda: not old.alive, 60, "the old worker to leave")
    assert old.popen is not None and old.popen.returncode == FENCED_EXIT
    log = old.log()
    assert "Traceback" not in log
    assert log.count("was taken over by a newer instance") == 1
    with platform.client() as client:
        ids = submit_echo(client, 10)
        wait_statuses(client, ids, {"succeeded"}, timeout=60)
    assert new.alive
