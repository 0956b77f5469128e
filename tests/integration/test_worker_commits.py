"""One worker transaction per task when tasks come one at a time: the `running` record waits in
the open transaction for the task's outcome instead of being committed alone while the task runs
(which cost Kafka a transaction more per task, and the outcome waited for that commit)."""

from __future__ import annotations

import pytest

from tests.harness import Platform, free_port, submit_echo, wait_statuses
from tests.integration.test_operating import scrape, total

pytestmark = pytest.mark.integration

COMMITS = "autoglm_worker_transaction_commit_seconds_count"


def test_a_running_task_shares_its_outcomes_transaction(platform: Platform) -> None:
    # A commit cadence far above the tasks' run time: only the outcome ends a transaction.
    plat = platform.variant(worker={"commit_every_ms": 10_000.0})
    plat.api()
    port = free_port()
    plat.worker("echo", "0", "--metrics-port", str(port))
    metrics = f"http://127.0.0.1:{port}/metrics"
    with plat.client() as client:
        wait_statuses(client, submit_echo(client, 1), {"succeeded"})  # the first assignment
        before = total(scrape(metrics), COMMITS)
        for _ in range(5):
            # 50 ms of work: the worker's loop turns many times, quiet, while the task runs.
            (task_id,) = submit_echo(client, 1, sleep_ms=50, stream=False)
            view = wait_statuses(client, [task_id], {"succeeded"})[task_id]
            assert view["status"] == "succeeded", view
        after = total(scrape(metrics), COMMITS)
    assert after - before == 5
