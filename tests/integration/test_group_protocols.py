"""Workers that joined under different group protocols share one group: during an upgrade of
the brokers (or of `kafka.group_protocol`) a classic worker and a consumer-protocol one split
the lanes, and when one is SIGKILLed the other takes its partitions; one result per task."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from tests.harness import Platform, committed_results, submit_echo, wait_for

pytestmark = pytest.mark.integration


def _partitions(client: httpx.Client) -> dict[str, int]:
    workers = client.get("/v1/workers").json()["workers"]
    return {w["worker_id"]: len(w.get("partitions", [])) for w in workers}


def _all_committed(platform: Platform, task_ids: list[str]) -> None:
    wait_for(
        lambda: set(task_ids) <= {r.task_id for r in committed_results(platform.settings)},
        60,
        "every result",
        interval=0.2,
    )


def test_a_classic_and_a_consumer_protocol_worker_share_the_lanes(platform: Platform) -> None:
    plat = platform.variant(worker={"heartbeat_interval_s": 0.3})
    plat.api()
    plat.worker("echo", "0", AUTOGLM_KAFKA__GROUP_PROTOCOL="classic")
    task_ids: list[str] = []
    with plat.client() as client:
        task_ids += submit_echo(client, 10)
        _all_committed(plat, task_ids)
        newcomer = plat.worker("echo", "1")  # auto: the consumer protocol on these brokers
        # Three lanes of two partitions: three each, whichever protocol each member speaks.
        wait_for(lambda: _partitions(client) == {"echo.0": 3, "echo.1": 3}, 60, "the split")
        task_ids += submit_echo(client, 20, batch=2)
        _all_committed(plat, task_ids)
        newcomer.kill()
        # The group times the silent member out (its own 10 s session) and the classic worker
        # takes every partition.
        wait_for(lambda: _partitions(client).get("echo.0") == 6, 60, "the takeover")
        task_ids += submit_echo(client, 10, batch=3)
        _all_committed(plat, task_ids)
    counts = Counter(r.task_id for r in committed_results(plat.settings))
    assert counts == Counter({t: 1 for t in task_ids}), counts
