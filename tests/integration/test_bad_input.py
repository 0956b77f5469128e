"""Promise 5: bad input gets a clear 4xx with the error body; nothing is half-written."""

from __future__ import annotations

import pytest
import redis

from mcp.names import Keys, Topics
from tests.harness import Platform, free_port, scan, submit

pytestmark = pytest.mark.integration

ECHO = {"model": "echo", "action": "generate", "payload": {"prompt": "x"}}


def assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


REFUSED = [
    ({"model": "nope", "action": "generate"}, "unknown_model"),
    ({"model": "echo", "action": "dance"}, "unknown_action"),
    ({"model": "glm-tiny", "action": "generate", "payload": {}}, "invalid_payload"),
    ({"model": "glm-tiny", "action": "classify", "payload": {"input": "x"}}, "invalid_payload"),
    ({"model": "echo"}, "invalid_request"),
    ({**ECHO, "timeout_s": -1}, "invalid_request"),
    ({**ECHO, "callback_url": "ftp://example.org/x"}, "invalid_request"),
    ({**ECHO, "callback_url": "http://10.0.0.1/hook"}, "callback_url_refused"),
    ({**ECHO, "callback_url": "http://169.254.169.254/latest"}, "callback_url_refused"),
    ({**ECHO, "webhook_events_filter": ["everything"]}, "invalid_request"),
    ({**ECHO, "surprise": 1}, "invalid_request"),
]


def test_refused_submissions(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        for body, code in REFUSED:
            assert_error(submit(client, body), 422, code)
    assert_nothing_recorded(platform)


def test_malformed_bodies(platform: Platform) -> None:
    platform.api(AUTOGLM_SERVER__MAX_BODY_BYTES="2048")
    with platform.client() as client:
        headers = {"content-type": "application/json"}
        assert_error(
            client.post("/v1/tasks", content=b"{nope", headers=headers), 400, "invalid_json"
        )
        assert_error(
            client.post("/v1/tasks", content=b"[1,2]", headers=headers), 422, "invalid_request"
        )
        big = {**ECHO, "payload": {"prompt": "x" * 4096}}
        assert_error(submit(client, big), 413, "payload_too_large")

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"model": "echo", "action": "generate", "payload": {"p": "'
            for _ in range(8):
                yield b"y" * 1024
            yield b'"}}'

        streamed = client.post("/v1/tasks", content=chunks(), headers=headers)
        assert_error(streamed, 413, "payload_too_large")
        assert_error(client.get("/v1/tasks/does-not-exist"), 404, "task_not_found")
        assert_error(client.post("/v1/tasks/does-not-exist/cancel"), 404, "task_not_found")
    assert_nothing_recorded(platform)


def test_rate_limit_answers_429_with_retry_after(platform: Platform) -> None:
    platform.api(AUTOGLM_SERVER__RATE_LIMIT_PER_S="0.5", AUTOGLM_SERVER__RATE_LIMIT_BURST="2")
    with platform.client() as client:
        statuses = [submit(client, ECHO) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [202, 202]
    assert_error(statuses[2], 429, "rate_limited")
    assert int(statuses[2].headers["retry-after"]) >= 1


def test_auth_and_project_isolation(platform: Platform) -> None:
    platform.api(
        AUTOGLM_AUTH__ENABLED="true",
        AUTOGLM_AUTH__API_KEYS='{"key-a": "alpha", "key-b": "beta"}',
    )
    with platform.client() as client:
        assert_error(submit(client, ECHO), 401, "unauthorized")
        assert_error(submit(client, ECHO, Authorization="Bearer wrong"), 401, "unauthorized")
        accepted = submit(client, ECHO, Authorization="Bearer key-a")
        assert accepted.status_code == 202
        task_id = accepted.json()["task_id"]
        mine = client.get(f"/v1/tasks/{task_id}", headers={"Authorization": "Bearer key-a"})
        assert mine.status_code == 200
        theirs = client.get(f"/v1/tasks/{task_id}", headers={"Authorization": "Bearer key-b"})
        assert_error(theirs, 404, "task_not_found")


def test_broker_unavailable_answers_503_and_records_nothing(platform: Platform) -> None:
    dead = f"127.0.0.1:{free_port()}"
    platform.api(
        probe="/healthz",
        AUTOGLM_KAFKA__BOOTSTRAP_SERVERS=dead,
        AUTOGLM_KAFKA__REQUEST_TIMEOUT_S="3",
    )
    with platform.client() as client:
        response = submit(client, ECHO, **{"Idempotency-Key": "k-503"})
        assert_error(response, 503, "broker_unavailable")
        assert client.get("/readyz").status_code == 503
    assert_nothing_recorded(platform)


def assert_nothing_recorded(platform: Platform) -> None:
    r = redis.Redis.from_url(platform.settings.redis.url)
    keys = Keys.of(platform.settings)
    assert list(r.scan_iter(match=keys.task("*"))) == []
    assert list(r.scan_iter(match=keys.idempotency("*", "*"))) == []
    topics = Topics.of(platform.settings)
    metadata_topics = _existing_topics(platform)
    for topic in (topics.tasks("echo"), topics.events):
        if topic in metadata_topics:
            assert scan(platform.settings, topic) == []


def _existing_topics(platform: Platform) -> set[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": platform.settings.kafka.bootstrap_servers})
    return set(admin.list_topics(timeout=10).topics)


def test_redis_unavailable_answers_503_not_500(platform: Platform) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    platform.api(probe="/healthz", AUTOGLM_REDIS__URL=dead)
    with platform.client() as client:
        assert_error(client.get("/v1/tasks/any"), 503, "store_unavailable")
        keyed = submit(client, ECHO, **{"Idempotency-Key": "k-redis"})
        assert_error(keyed, 503, "store_unavailable")
        assert client.get("/readyz").status_code == 503
