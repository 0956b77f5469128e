"""A delivery's records: each fact moves the state on and keeps what a replay needs."""

from __future__ import annotations

from datetime import timedelta

from schemas import WebhookAttempt, WebhookRecord, dumps, loads, utcnow
from schemas.webhooks import MAX_HISTORY


def _first() -> WebhookRecord:
    return WebhookRecord.scheduled(
        webhook_id="msg_t_succeeded",
        task_id="t",
        project="p",
        type="task.succeeded",
        url="https://example.org/hook",
        body='{"type":"task.succeeded","data":{"snow":"\u2744"}}',
        at=utcnow(),
    )


def _attempt(n: int, code: int | None, retry_in_s: float | None) -> WebhookAttempt:
    now = utcnow()
    next_at = None if retry_in_s is None else now + timedelta(seconds=retry_in_s)
    return WebhookAttempt(
        attempt=n, at=now, duration_ms=3.5, status_code=code, error="", next_attempt_at=next_at
    )


def test_attempts_move_the_state_and_keep_the_history() -> None:
    first = _first()
    assert (first.fact, first.version, first.status, first.attempts) == (
        "scheduled",
        1,
        "pending",
        0,
    )

    retrying = first.after(_attempt(1, 500, 5), delivered=False)
    assert (retrying.fact, retrying.status, retrying.version) == ("attempted", "retrying", 2)
    assert (retrying.attempts, retrying.step, retrying.last_status_code) == (1, 1, 500)
    assert retrying.next_attempt_at == retrying.history[0].next_attempt_at

    done = retrying.after(_attempt(2, 200, None), delivered=True)
    assert (done.fact, done.status, done.attempts, done.version) == ("delivered", "delivered", 2, 3)
    assert done.next_attempt_at is None and done.finished_at is not None
    assert [a.status_code for a in done.history] == [500, 200]
    assert done.body == first.body and loads(WebhookRecord, dumps(done)) == done


def test_giving_up_and_redelivery() -> None:
    dead = _first().after(_attempt(1, 410, None), delivered=False)
    assert (dead.fact, dead.status, dead.next_attempt_at) == ("given_up", "failed", None)

    at = utcnow()
    again = dead.redelivered(at)
    assert (again.fact, again.status, again.step, again.version) == (
        "redelivery_requested",
        "pending",
        0,
        3,
    )
    assert (again.next_attempt_at, again.finished_at, again.redeliveries) == (at, None, 1)
    assert again.attempts == 1 and again.webhook_id == dead.webhook_id

    waiting = _first().after(_attempt(1, 503, 3600), delivered=False)
    sooner = waiting.redelivered(at)
    assert (sooner.status, sooner.step, sooner.next_attempt_at) == ("retrying", 1, at)


def test_history_is_bounded_but_attempts_are_counted() -> None:
    state = _first()
    for n in range(1, MAX_HISTORY + 11):
        state = state.after(_attempt(n, 500, 1), delivered=False)
    assert state.attempts == MAX_HISTORY + 10 and len(state.history) == MAX_HISTORY
    assert state.history[-1].attempt == MAX_HISTORY + 10
