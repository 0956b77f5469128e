"""Lanes: the commit point is the lowest unfinished record, finished ones above it travel in
the commit's metadata, and the next reader skips exactly those."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from workers.lanes import Lane, Lanes, decode, encode


def test_metadata_round_trips_and_ignores_foreign_metadata() -> None:
    done = {100, 101, 107, 163, 2100}
    assert decode(100, encode(100, done)) == done
    assert encode(100, [99, 50]) == ""
    assert decode(100, "") == set()
    assert decode(100, "written by another tool") == set()
    assert decode(100, "hol1:!!not base64!!") == set()


def test_commit_point_stays_at_the_slow_record_while_later_ones_finish() -> None:
    lane = Lane(10)
    for offset in (10, 11, 12, 14):  # 13 is a transaction marker: never read
        assert lane.read(offset)
    lane.finish(11)
    lane.finish(14)
    position, metadata = lane.commit_point()
    assert position == 10 and decode(10, metadata) == {11, 14}
    assert lane.span() == 5
    lane.finish(10)
    position, metadata = lane.commit_point()
    assert position == 12 and decode(12, metadata) == {14}
    lane.finish(12)
    assert lane.commit_point() == (15, "")


def test_the_next_reader_skips_what_was_published_and_keeps_it_listed() -> None:
    before = Lane(10)
    for offset in (10, 11, 12, 14, 15):
        before.read(offset)
    for offset in (11, 14):
        before.finish(offset)
    position, metadata = before.commit_point()

    after = Lane(position, metadata)  # a new owner after a crash
    assert after.read(10)  # the slow one runs again
    assert not after.read(11)  # published already
    # A commit before 14 is read again must still list it.
    position, metadata = after.commit_point()
    assert position == 10 and decode(10, metadata) == {11, 14}
    assert after.read(12) and not after.read(14) and after.read(15)
    for offset in (10, 12, 15):
        after.finish(offset)
    assert after.commit_point() == (16, "")


def test_lanes_commit_only_what_moved_and_report_crowded_partitions() -> None:
    lanes = Lanes()
    lanes.take([TopicPartition("t", 0, 5), TopicPartition("t", 1, -1001)])
    assert lanes.offsets() == [] and not lanes.changed
    lane = lanes.get(("t", 0))
    assert lane is not None
    lane.read(5)
    lane.read(6)
    lane.finish(6)
    [tp] = lanes.offsets()
    assert (tp.partition, tp.offset) == (0, 5) and decode(5, tp.metadata) == {6}
    assert lanes.crowded(2) == [("t", 0)] and lanes.crowded(3) == []
    lanes.committed()
    assert not lanes.changed
    fresh = lanes.get(("t", 1))
    assert fresh is not None and fresh.read(42)
    fresh.finish(42)
    assert [(tp.partition, tp.offset) for tp in lanes.offsets()] == [(1, 43)]
