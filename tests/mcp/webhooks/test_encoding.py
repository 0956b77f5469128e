"""A delivery state is serialised once: the journal's value is made from Redis's copy."""

from __future__ import annotations

from datetime import timedelta

import orjson

from mcp.names import Topics
from mcp.settings import Settings
from mcp.webhooks.deliveries import encoded, hash_fields, with_body
from mcp.webhooks.projection import journal_record
from schemas import WebhookAttempt, WebhookRecord, dumps, loads, utcnow


def _states() -> list[WebhookRecord]:
    now = utcnow()
    first = WebhookRecord.scheduled(
        webhook_id="msg_t_succeeded",
        task_id="t",
        project="p",
        type="task.succeeded",
        url="https://example.org/hook",
        body='{"type":"task.succeeded","data":{"snow":"\u2744","q":"\\"\\u0000</"}}',
        at=now,
    )
    failed = WebhookAttempt(
        attempt=1,
        at=now,
        duration_ms=3.5,
        status_code=503,
        error='the receiver answered 503 "busy"',
        next_attempt_at=now + timedelta(seconds=5),
    )
    retrying = first.after(failed, delivered=False)
    done = WebhookAttempt(attempt=2, at=now, duration_ms=1.0, status_code=200)
    return [first, retrying, retrying.after(done, delivered=True)]


def test_the_journal_value_made_from_the_encoded_state_is_the_same_record() -> None:
    topics = Topics.of(Settings())
    for state in _states():
        without = encoded(state)
        assert orjson.loads(without) == orjson.loads(state.model_dump_json(exclude={"body"}))
        value = with_body(without, state.body)
        assert orjson.loads(value) == orjson.loads(dumps(state))
        assert loads(WebhookRecord, value) == state
        assert journal_record(topics, state, without).value == value
        assert orjson.loads(journal_record(topics, state).value) == orjson.loads(value)
        assert hash_fields(state, without)["record"] == without
