"""The API's committer lanes gather in turn, so consecutive transactions go to different
producers (see `mcp.producer._Turns`); one lane needs no turns."""

from __future__ import annotations

import threading

from mcp.producer import _Turns


def _run_lanes(turns: _Turns, lanes: int, rounds: int) -> list[int]:
    order: list[int] = []

    def lane(index: int) -> None:
        for _ in range(rounds):
            turns.wait(index)
            order.append(index)
            turns.pass_on()

    threads = [threading.Thread(target=lane, args=(i,)) for i in reversed(range(lanes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    return order


def test_two_lanes_take_turns() -> None:
    assert _run_lanes(_Turns(2), 2, 5) == [0, 1] * 5


def test_three_lanes_take_turns() -> None:
    assert _run_lanes(_Turns(3), 3, 4) == [0, 1, 2] * 4


def test_one_lane_never_waits() -> None:
    assert _run_lanes(_Turns(1), 1, 3) == [0, 0, 0]
