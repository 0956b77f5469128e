"""The settler: committed outcomes reach Redis in commit order, what piled up while it was busy
goes in one call, and closing publishes what is queued."""

from __future__ import annotations

import threading

from schemas import AsyncTask, TaskStatus
from workers.outcome import Outcome
from workers.settler import Settler


def _outcomes(n: int) -> list[Outcome]:
    return [
        Outcome(AsyncTask(model="echo", action="generate", payload={}), TaskStatus.SUCCEEDED, 1)
        for _ in range(n)
    ]


def test_outcomes_keep_their_commit_order_and_pile_up_while_it_is_busy() -> None:
    calls: list[list[Outcome]] = []
    busy = threading.Event()
    release = threading.Event()

    def publish(outcomes: list[Outcome]) -> None:
        calls.append(outcomes)
        busy.set()
        release.wait(5)

    settler = Settler(publish)
    first, second, third = _outcomes(2), _outcomes(1), _outcomes(3)
    settler.put(first)
    assert busy.wait(5)  # the first commit is being published...
    settler.put(second)  # ...while two more commits come in
    settler.put(third)
    release.set()
    settler.close()
    assert calls == [first, second + third]


def test_close_publishes_what_is_queued_and_then_stops() -> None:
    calls: list[list[Outcome]] = []
    settler = Settler(calls.append)
    batches = [_outcomes(1) for _ in range(5)]
    for batch in batches:
        settler.put(batch)
    settler.close()
    assert [o for call in calls for o in call] == [o for batch in batches for o in batch]
    assert not settler._thread.is_alive()


def test_a_failing_publish_does_not_stop_later_ones() -> None:
    calls: list[int] = []

    def publish(outcomes: list[Outcome]) -> None:
        calls.append(len(outcomes))
        if len(calls) == 1:
            raise RuntimeError("Redis went away")

    settler = Settler(publish)
    settler.put(_outcomes(1))
    settler.put(_outcomes(2))
    settler.close()
    assert sum(calls) == 3
