"""The offset tracker: what may be committed is the lowest unfinished offset of a partition."""

from __future__ import annotations

import random

import pytest

from tiny_listener.kafka._offsets import OffsetError, OffsetTracker, PartitionOffsets


def test_nothing_received_nothing_to_commit() -> None:
    offsets = PartitionOffsets()
    assert offsets.committable is None
    assert offsets.to_commit() is None


def test_committable_is_the_lowest_unfinished_offset() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12, 13):
        offsets.received(offset)
    assert offsets.committable == 10
    offsets.finished(12)  # finishing early never commits past 10 and 11, still running
    offsets.finished(11)
    assert offsets.committable == 10
    assert offsets.unfinished == 2
    offsets.finished(10)
    assert offsets.committable == 13
    offsets.finished(13)
    assert offsets.committable == 14  # all done: the next record to read
    assert offsets.unfinished == 0


def test_gaps_in_offsets_are_skipped() -> None:
    offsets = PartitionOffsets()
    offsets.received(3)
    offsets.received(7)  # 4..6 compacted away
    offsets.finished(3)
    assert offsets.committable == 7
    offsets.finished(7)
    assert offsets.committable == 8


def test_a_fetched_batch_is_received_as_its_records_one_by_one() -> None:
    batch, one_by_one = PartitionOffsets(), PartitionOffsets()
    batch.received_all([4, 5, 9])
    batch.received_all([])
    for offset in (4, 5, 9):
        one_by_one.received(offset)
    for offsets in (batch, one_by_one):
        assert (offsets.last_received, offsets.committable, offsets.unfinished) == (9, 4, 3)
        offsets.finished(5)
        offsets.finished(4)
        assert offsets.committable == 9
    with pytest.raises(OffsetError, match="received after offset 9"):
        batch.received_all([9, 10])  # 9 is held already
    with pytest.raises(OffsetError):
        batch.received_all([12, 11])
    assert batch.last_received == 9


def test_to_commit_only_when_moved_past_the_committed_offset() -> None:
    offsets = PartitionOffsets(committed=5)
    offsets.received(5)
    assert offsets.to_commit() is None  # 5 is committed already
    offsets.finished(5)
    assert offsets.to_commit() == 6
    offsets.committed = 6
    assert offsets.to_commit() is None


@pytest.mark.parametrize("bad", ["repeat", "backwards", "unknown", "twice"])
def test_misuse_raises(bad: str) -> None:
    offsets = PartitionOffsets()
    offsets.received(1)
    offsets.received(2)
    with pytest.raises(OffsetError):
        if bad == "repeat":
            offsets.received(2)
        elif bad == "backwards":
            offsets.received(0)
        elif bad == "unknown":
            offsets.finished(9)
        else:
            offsets.finished(2)
            offsets.finished(2)


def test_random_finishing_order_commits_the_lowest_unfinished() -> None:
    rng = random.Random(7)
    offsets = PartitionOffsets()
    received = list(range(0, 2000, 2))
    for offset in received:
        offsets.received(offset)
    order = received[:]
    rng.shuffle(order)
    done = set()
    for offset in order:
        offsets.finished(offset)
        done.add(offset)
        lowest_unfinished = next((o for o in received if o not in done), received[-1] + 1)
        assert offsets.committable == lowest_unfinished
    assert offsets.unfinished == 0


def test_tracker_batches_and_reports_moved_partitions_only() -> None:
    tracker: OffsetTracker[str] = OffsetTracker(batch=3)
    a, b = tracker.assign("a"), tracker.assign("b", committed=100)
    for offset in range(5):
        a.received(offset)
    b.received(100)
    assert not tracker.finished(a, 0)
    assert not tracker.finished(a, 2)
    assert not tracker.due
    assert tracker.finished(b, 100)  # this one made the batch due
    assert tracker.due
    a.received(5)
    assert not tracker.finished(a, 5)  # still due: said once per batch
    assert tracker.due
    commits = tracker.to_commit()
    assert commits == {"a": 1, "b": 101}
    assert not tracker.due
    tracker.committed(commits)
    assert tracker.to_commit() == {}
    tracker.finished(a, 1)
    assert tracker.to_commit(["b"]) == {}  # only the partitions asked for
    assert tracker.to_commit(["a"]) == {"a": 3}


def test_tracker_commits_records_finishing_in_order_and_out_of_order() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    a = tracker.assign("a")
    a.received_all(list(range(6)))
    tracker.finished(a, 0)  # in offset order, as a partition's records run by default
    assert tracker.to_commit() == {"a": 1}
    tracker.finished(a, 2)  # a key's record finishing before an earlier offset
    tracker.finished(a, 1)  # the lowest again: 2 finished already, so 3 is committable
    assert a.unfinished == 3
    assert tracker.to_commit() == {"a": 3}
    tracker.finished(a, 3)
    with pytest.raises(OffsetError):
        tracker.finished(a, 3)
    assert tracker.to_commit() == {"a": 4}


def test_revoked_partitions_are_forgotten() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    a = tracker.assign("a")
    a.received(0)
    tracker.finished(a, 0)
    commits = tracker.to_commit()
    assert tracker.revoke("a") is a
    tracker.committed(commits)  # a commit that lands after the revocation changes nothing
    assert a.committed is None
    assert tracker.to_commit() == {}
    assert tracker.revoke("a") is None


def test_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OffsetTracker(batch=0)
