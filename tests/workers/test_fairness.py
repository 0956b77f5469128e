"""FairQueue order: priority first, weighted round robin across projects, FIFO per partition."""

from __future__ import annotations

from workers.fairness import FairQueue


def test_priority_then_round_robin_across_projects() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(100):
        queue.push(("tasks.echo.low", 0), "low", "a", f"a-low-{i}")
    for i in range(3):
        queue.push(("tasks.echo", 0), "normal", "a", f"a-{i}")
        queue.push(("tasks.echo", 1), "normal", "b", f"b-{i}")
    queue.push(("tasks.echo.high", 1), "high", "b", "b-high")
    assert queue.take(1) == ["b-high"]
    assert queue.take(6) == ["a-0", "b-0", "a-1", "b-1", "a-2", "b-2"]
    assert queue.take(2) == ["a-low-0", "a-low-1"]
    assert len(queue) == 98 and queue.waiting(("tasks.echo.low", 0)) == 98


def test_weights_and_no_banked_credit() -> None:
    queue: FairQueue[str] = FairQueue(weight=lambda p: 3.0 if p == "a" else 1.0)
    for i in range(40):
        queue.push(("t", 0), "normal", "a", f"a{i}")
        queue.push(("t", 1), "normal", "b", f"b{i}")
    first = queue.take(20)
    assert sum(j.startswith("a") for j in first) == 15  # 3:1
    # c was idle all along: it joins at the current pass, not ahead of everyone by 20 turns.
    for i in range(10):
        queue.push(("t", 2), "normal", "c", f"c{i}")
    nxt = queue.take(10)
    assert 2 <= sum(j.startswith("c") for j in nxt) <= 5


def test_batches_share_a_key_and_partitions_stay_in_order() -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue()
    for i in range(4):
        queue.push(("t", 0), "normal", "a", ("gen", i))
    queue.push(("t", 1), "normal", "b", ("embed", 0))
    queue.push(("t", 1), "normal", "b", ("gen", 9))
    batch = queue.take(10, batch_key=lambda job: job[0])
    assert batch == [("gen", 0), ("gen", 1), ("gen", 2), ("gen", 3)]
    assert queue.take(10, batch_key=lambda job: job[0]) == [("embed", 0)]
    assert queue.drop([("t", 1)]) == [("gen", 9)] and len(queue) == 0
