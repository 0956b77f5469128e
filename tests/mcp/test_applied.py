"""The memo of `task-events` records this process applied to Redis itself (`mcp.applied`): its
projector reads past each of them once, and only those."""

from __future__ import annotations

from mcp.applied import AppliedHere


def test_a_noted_record_is_taken_once() -> None:
    memo = AppliedHere()
    memo.note([(b"task-1", b'{"status":"queued"}')])
    assert memo.take(b"task-1", b'{"status":"queued"}')
    # Read again (a rewind after a Redis failover): this time it is applied.
    assert not memo.take(b"task-1", b'{"status":"queued"}')
    assert len(memo) == 0


def test_only_the_same_key_and_value_are_taken() -> None:
    memo = AppliedHere()
    memo.note([(b"task-1", b"queued")])
    assert not memo.take(b"task-2", b"queued")
    assert not memo.take(b"task-1", b"queued, cancel requested")
    assert not memo.take(None, b"queued")
    assert memo.take(b"task-1", b"queued")


def test_the_oldest_give_way_past_the_limit() -> None:
    memo = AppliedHere(limit=3)
    memo.note([(f"task-{n}".encode(), b"v") for n in range(5)])
    assert len(memo) == 3
    assert not memo.take(b"task-0", b"v")  # forgotten: the projector applies it (harmless)
    assert not memo.take(b"task-1", b"v")
    assert all(memo.take(f"task-{n}".encode(), b"v") for n in (2, 3, 4))
