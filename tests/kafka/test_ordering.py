"""The ordering scheduler: per partition in offset order, or per key when asked."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest

from tiny_listener.kafka._ordering import OrderingScheduler

Record = Tuple[str, int, Optional[bytes]]  # partition, offset, key


def take(scheduler: OrderingScheduler[str, Record], limit: int) -> List[Record]:
    """The records ``take_entries`` gives, without their lanes."""
    return [record for _, record in scheduler.take_entries(limit)]


def run_all(
    scheduler: OrderingScheduler[str, Record], records: List[Record], parallel: int, batched: bool = False
) -> List[List[Record]]:
    """Feed ``records`` (one by one, or each partition's as one fetched batch) and run them in
    rounds of up to ``parallel``; return each round."""
    lanes = {partition: scheduler.assign(partition) for partition in sorted({r[0] for r in records})}
    if batched:
        for partition, its_lanes in lanes.items():
            scheduler.add_all(its_lanes, [r for r in records if r[0] == partition], lambda record: record[2])
    else:
        for record in records:
            scheduler.add(lanes[record[0]], record[2], record)
    rounds = []
    while scheduler.waiting:
        taken = take(scheduler, parallel)
        assert taken, "records wait but none may start"
        rounds.append(taken)
        for record in taken:
            scheduler.done(lanes[record[0]], record[2])
    return rounds


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_by_partition_one_at_a_time_in_offset_order(batched: bool) -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler()
    records: List[Record] = [(p, o, f"k{o % 3}".encode()) for o in range(5) for p in ("p0", "p1")]
    rounds = run_all(scheduler, records, parallel=100, batched=batched)
    # Each round runs one record of each partition, the next offset of each.
    assert rounds == [[("p0", o, f"k{o % 3}".encode()), ("p1", o, f"k{o % 3}".encode())] for o in range(5)]


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_by_key_runs_keys_concurrently_and_each_key_in_order(batched: bool) -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler(by_key=True)
    records: List[Record] = [("p0", o, b"a" if o % 2 else b"b") for o in range(6)] + [("p0", 6, None), ("p0", 7, None)]
    rounds = run_all(scheduler, records, parallel=100, batched=batched)
    assert rounds[0] == [("p0", 0, b"b"), ("p0", 1, b"a"), ("p0", 6, None)]
    flat = [record for taken in rounds for record in taken]
    for key in (b"a", b"b", None):
        offsets = [o for _, o, k in flat if k == key]
        assert offsets == sorted(offsets)
    assert len(rounds) == 3


def test_a_batch_fetched_while_its_partition_runs_waits_behind_it() -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler()
    lanes = scheduler.assign("p0")
    scheduler.add_all(lanes, [("p0", 0, None), ("p0", 1, None)], lambda record: record[2])
    assert take(scheduler, 10) == [("p0", 0, None)]
    scheduler.add_all(lanes, [("p0", 2, None), ("p0", 3, None)], lambda record: record[2])
    scheduler.add_all(lanes, [], lambda record: record[2])
    assert scheduler.startable == 0 and scheduler.waiting == 3
    for offset in (1, 2, 3):
        scheduler.done(lanes, None)
        assert take(scheduler, 10) == [("p0", offset, None)]
    scheduler.done(lanes, None)
    assert scheduler.waiting == 0 and lanes.busy_lanes == 0


def test_take_respects_the_limit() -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler()
    lanes = [scheduler.assign(f"p{i}") for i in range(4)]
    for i, lane in enumerate(lanes):
        scheduler.add(lane, None, (f"p{i}", 0, None))
    assert scheduler.startable == 4
    assert len(take(scheduler, 3)) == 3
    assert scheduler.startable == 1
    assert scheduler.waiting == 1


def test_a_record_handed_back_runs_again_before_the_rest_of_its_lane() -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler()
    lanes = scheduler.assign("p0")
    for offset in range(3):
        scheduler.add(lanes, None, ("p0", offset, None))
    first = take(scheduler, 10)
    assert first == [("p0", 0, None)]
    scheduler.put_back(lanes, None, first[0])
    assert take(scheduler, 10) == [("p0", 0, None)]  # not offset 1: the lane is still held
    scheduler.done(lanes, None)
    assert take(scheduler, 10) == [("p0", 1, None)]


def test_revocation_forgets_waiting_records_and_ignores_late_completions() -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler(by_key=True)
    p0, p1 = scheduler.assign("p0"), scheduler.assign("p1")
    for offset in range(3):
        scheduler.add(p0, b"k", ("p0", offset, b"k"))
    scheduler.add(p0, b"j", ("p0", 3, b"j"))
    scheduler.add(p1, b"k", ("p1", 0, b"k"))
    running = take(scheduler, 1)
    assert running == [("p0", 0, b"k")]
    dropped = scheduler.revoke("p0")
    assert sorted(dropped) == [("p0", 1, b"k"), ("p0", 2, b"k"), ("p0", 3, b"j")]
    assert p0.revoked
    scheduler.done(p0, b"k")  # the running record finishes after the revocation: ignored
    scheduler.put_back(p0, b"k", running[0])  # so is one handed back
    assert take(scheduler, 10) == [("p1", 0, b"k")]
    assert scheduler.waiting == 0
    assert scheduler.revoke("p0") == []


def test_the_next_record_of_a_lane_is_taken_by_whoever_settled_the_last_or_made_startable() -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler()
    lanes = scheduler.assign("p0")
    for offset in range(4):
        scheduler.add(lanes, None, ("p0", offset, None))
    assert take(scheduler, 10) == [("p0", 0, None)]
    # Taken to run at once: not startable, no longer waiting, and its lane stays busy.
    assert scheduler.take_next(lanes, None) == ("p0", 1, None)
    assert scheduler.startable == 0 and scheduler.waiting == 2
    # The next one is taken, but does not run after all (shutdown): it may start, in its turn.
    following = scheduler.take_next(lanes, None)
    assert following == ("p0", 2, None)
    scheduler.make_startable(lanes, following)
    assert scheduler.startable == 1 and scheduler.waiting == 2
    assert take(scheduler, 10) == [("p0", 2, None)]
    assert take(scheduler, 10) == []  # ("p0", 3) waits behind it
    assert scheduler.done(lanes, None) == ("p0", 3, None)
    assert take(scheduler, 10) == [("p0", 3, None)]
    assert scheduler.take_next(lanes, None) is None  # the lane is idle
    assert scheduler.waiting == 0


def test_a_record_taken_from_a_revoked_partition_is_not_made_startable() -> None:
    scheduler: OrderingScheduler[str, Record] = OrderingScheduler()
    lanes = scheduler.assign("p0")
    for offset in range(2):
        scheduler.add(lanes, None, ("p0", offset, None))
    take(scheduler, 10)
    following = scheduler.take_next(lanes, None)
    assert following == ("p0", 1, None)
    scheduler.revoke("p0")
    scheduler.make_startable(lanes, following)
    assert scheduler.startable == 0 and take(scheduler, 10) == []
    assert scheduler.take_next(lanes, None) is None
