"""Reading tasks back over HTTP: the list, timelines, queues, webhook attempts, dead webhooks."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import redis

from mcp.settings import Settings
from tests.conftest import make_settings
from tests.harness import Platform, committed_results, submit, wait_for, wait_statuses
from tests.mcp.webhooks.conftest import SECRET, Receiver, Reply

pytestmark = pytest.mark.integration

# Admins of two projects (the dead-letter routes need the admin role) and a developer.
KEYS = {
    "key-alpha": {"project": "alpha", "role": "admin"},
    "key-beta": {"project": "beta", "role": "admin"},
    "key-beta-dev": {"project": "beta", "role": "developer"},
}


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, namespace: str) -> Settings:
    return make_settings(
        kafka_bootstrap,
        redis_url,
        namespace,
        auth={"enabled": True, "api_keys": KEYS},
        webhooks={
            "allow_networks": ["127.0.0.0/8"],
            "secrets": {"alpha": [SECRET]},
            "schedule_s": [0.0, 0.1],
            "jitter": 0,
        },
    )


def client_of(platform: Platform, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=platform.url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    )


def echo(n: int, **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "action": "generate", "payload": {"n": n}, **extra}


def listed(client: httpx.Client, **params: Any) -> list[str]:
    """Every task id of the listing, walking all pages."""
    out: list[str] = []
    cursor = None
    while True:
        page = client.get("/v1/tasks", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        out += [t["task_id"] for t in page.json()["tasks"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return out


def test_list_filters_pages_and_refuses_bad_input(platform: Platform) -> None:
    platform.api()
    with client_of(platform, "key-alpha") as alpha, client_of(platform, "key-beta") as beta:
        ids = [
            submit(alpha, echo(n, metadata={"batch": "b1" if n < 4 else "b2"})).json()["task_id"]
            for n in range(7)
        ]
        failing = submit(alpha, echo(9, payload={"fail_times": 9})).json()["task_id"]
        theirs = submit(beta, echo(0)).json()["task_id"]
        # Queued, with no worker yet: newest first, in pages of 3.
        assert listed(alpha, limit=3) == [failing, *reversed(ids)]
        assert listed(alpha, status="queued", model="echo") == [failing, *reversed(ids)]
        assert listed(alpha, metadata="batch=b1") == list(reversed(ids[:4]))
        assert listed(beta) == [theirs]

        platform.worker("echo", "0")
        wait_statuses(alpha, [*ids, failing], {"succeeded", "failed"})
        assert listed(alpha, status="failed") == [failing]
        assert listed(alpha, status="succeeded", metadata="batch=b2") == list(reversed(ids[4:]))
        assert listed(alpha, status="queued") == []
        first = alpha.get(f"/v1/tasks/{ids[0]}").json()["created_at"]
        assert listed(alpha, until=first) == [ids[0]]
        assert set(listed(alpha, since=first)) == {*ids, failing}
        summary = alpha.get("/v1/tasks", params={"status": "failed"}).json()["tasks"][0]
        assert summary["error"]["code"] == "backend_error"
        assert "result" not in summary

        events = alpha.get(f"/v1/tasks/{failing}/events").json()["events"]
        statuses = [(e["status"], e["attempt"]) for e in events]
        assert statuses[0] == ("queued", 0) and statuses[-1][0] == "failed"
        assert ("running", 1) in statuses and statuses[-1] == ("failed", 3)
        assert all(e["worker_id"] for e in events if e["status"] == "running")

        queues = alpha.get("/v1/queues").json()
        [queue] = [q for q in queues["queues"] if q["model"] == "echo"]
        assert queue["backlog"] == 0 and queue["workers"]["alive"] == 1
        assert queues["rates"]["submitted"] > 0

        # The failed task is in the dead-letter topic; a requeue is a new task, made once.
        def dead_letters() -> list[dict[str, Any]]:
            letters: list[dict[str, Any]] = alpha.get("/v1/dlq").json()["dead_letters"]
            return letters

        wait_for(lambda: [d["task_id"] for d in dead_letters()] == [failing], 30, "dead letter")
        assert dead_letters()[0]["error"] == "backend_error"
        requeued = alpha.post(f"/v1/dlq/{failing}/requeue")
        assert requeued.status_code == 202, requeued.text
        new_id = requeued.json()["task_id"]
        assert new_id != failing
        repeat = alpha.post(f"/v1/dlq/{failing}/requeue")
        assert repeat.status_code == 200 and repeat.json()["task_id"] == new_id
        with client_of(platform, "key-beta-dev") as developer:
            assert developer.post(f"/v1/dlq/{failing}/requeue").status_code == 403
        assert alpha.post("/v1/dlq/no-such-task/requeue").status_code == 404
        assert beta.get("/v1/dlq").json()["dead_letters"] == []
        wait_statuses(alpha, [new_id], {"failed"})
        wait_for(lambda: len(dead_letters()) == 2, 30, "the requeued task dead too")
        assert dead_letters()[1] == {**dead_letters()[1], "task_id": failing, "requeued_as": new_id}
        outcomes = Counter(r.task_id for r in committed_results(platform.settings))
        assert outcomes[failing] == 1 and outcomes[new_id] == 1 and set(outcomes.values()) == {1}

        for params, status, code in [
            ({"colour": "red"}, 422, "invalid_request"),
            ({"status": "sleeping"}, 422, "invalid_request"),
            ({"limit": 0}, 422, "invalid_request"),
            ({"since": "yesterday"}, 422, "invalid_request"),
            ({"metadata": "no-equals-sign"}, 422, "invalid_request"),
            ({"cursor": "garbage!"}, 400, "invalid_cursor"),
        ]:
            answer = alpha.get("/v1/tasks", params=params)
            assert answer.status_code == status, (params, answer.text)
            assert answer.json()["error"]["code"] == code
        for path in ("events", "webhook/attempts"):
            with client_of(platform, "key-beta-dev") as developer:
                assert developer.get(f"/v1/tasks/{ids[0]}/{path}").status_code == 404
            assert beta.get(f"/v1/tasks/{theirs}/{path}").status_code == 200
        assert httpx.get(f"{platform.url}/v1/tasks").status_code == 401


def test_dead_webhooks_are_listed_and_redelivered_in_bulk(platform: Platform) -> None:
    receiver = Receiver(Reply(status=500))
    try:
        platform.api()
        platform.worker("echo", "0")
        platform.dispatcher()
        with client_of(platform, "key-alpha") as alpha, client_of(platform, "key-beta") as beta:
            ids = [
                submit(alpha, echo(n, callback_url=receiver.url(f"/hook{n}"))).json()["task_id"]
                for n in range(2)
            ]

            def dead() -> list[dict[str, Any]]:
                answer = alpha.get("/v1/webhooks/dead")
                assert answer.status_code == 200, answer.text
                webhooks: list[dict[str, Any]] = answer.json()["webhooks"]
                return webhooks

            wait_for(lambda: len(dead()) == 2, 60, "two dead webhooks")
            assert {w["task_id"] for w in dead()} == set(ids)
            assert beta.get("/v1/webhooks/dead").json()["webhooks"] == []
            [delivery] = alpha.get(f"/v1/tasks/{ids[0]}/webhook/attempts").json()["deliveries"]
            assert delivery["status"] == "failed" and delivery["attempts"] == 2
            assert delivery["last_status_code"] == 500 and delivery["type"] == "task.succeeded"

            receiver.default = Reply(status=200)
            webhook_ids = [w["webhook_id"] for w in dead()]
            refused = beta.post("/v1/webhooks/dead/redeliver", json={"webhook_ids": webhook_ids})
            assert refused.json() == {"redelivered": [], "not_found": webhook_ids}
            answer = alpha.post("/v1/webhooks/dead/redeliver", json={})
            assert answer.status_code == 202
            assert sorted(answer.json()["redelivered"]) == sorted(webhook_ids)
            wait_for(lambda: dead() == [], 30, "dead list empty")
            wait_for(
                lambda: all(
                    alpha.get(f"/v1/tasks/{t}").json()["webhook"]["status"] == "delivered"
                    for t in ids
                ),
                30,
                "webhooks delivered",
            )
            assert (
                alpha.post("/v1/webhooks/dead/redeliver", json={"webhook_ids": 5}).status_code
                == 422
            )
    finally:
        receiver.close()


def test_replay_rebuilds_lists_timelines_and_dead_letters(
    platform: Platform, redis_client: redis.Redis
) -> None:
    platform.api()
    platform.worker("echo", "0")
    with client_of(platform, "key-alpha") as alpha:
        ids = [submit(alpha, echo(n, metadata={"n": n})).json()["task_id"] for n in range(5)]
        dead = submit(alpha, echo(9, payload={"fail_times": 9})).json()["task_id"]
        wait_statuses(alpha, [*ids, dead], {"succeeded", "failed"})
        wait_for(lambda: alpha.get("/v1/dlq").json()["dead_letters"] != [], 30, "dead letter")
        before = {
            "all": listed(alpha),
            "failed": listed(alpha, status="failed"),
            "meta": listed(alpha, metadata="n=3"),
            "events": alpha.get(f"/v1/tasks/{dead}/events").json(),
            "dlq": alpha.get("/v1/dlq").json(),
        }
        platform.stop()
        prefix = platform.settings.redis.key_prefix
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)
        replay = platform._proc("replay", ["replay"])
        assert replay.popen is not None and replay.popen.wait(120) == 0, replay.log()
        platform.api(AUTOGLM_SERVER__RUN_PROJECTOR="false")
        after = {
            "all": listed(alpha),
            "failed": listed(alpha, status="failed"),
            "meta": listed(alpha, metadata="n=3"),
            "events": alpha.get(f"/v1/tasks/{dead}/events").json(),
            "dlq": alpha.get("/v1/dlq").json(),
        }
    assert after == before
    assert before["all"] == [dead, *reversed(ids)] and before["meta"] == [ids[3]]
