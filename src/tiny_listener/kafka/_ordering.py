"""In which order the records of a partition may run, without any network code.

Records of one partition run one at a time in offset order by default. With ``by_key``, each
message key of a partition is its own lane: records of different keys run concurrently,
records of one key in offset order (records without a key share one lane). Records of
different partitions always run concurrently; the listener's ``max_in_flight`` bounds them
all.

:class:`PartitionLanes` orders one partition; :class:`OrderingScheduler` holds every assigned
partition and the queue of records that may start now.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, Generic, Hashable, List, Tuple, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound=Hashable)

Lane = Hashable
"""What records of one lane share: None for the whole partition, else the record's key."""


class PartitionLanes(Generic[T]):
    """The records of one partition waiting for their turn, by lane.

    A lane is busy from the moment one of its records may start until :meth:`done` is called
    for that record; meanwhile the lane's later records wait here.
    """

    __slots__ = ("_busy", "by_key", "owner", "revoked")

    def __init__(self, by_key: bool = False) -> None:
        self.by_key = by_key
        self.owner: Any = None
        """What the user of the scheduler keeps of the partition (given back with each record
        by :meth:`OrderingScheduler.take_entries`)."""
        # lane -> the records waiting behind the one running (an empty deque: one is running).
        self._busy: Dict[Lane, Deque[T]] = {}
        self.revoked = False
        """Set when the partition is revoked: its records are no longer started or settled."""

    def lane(self, key: bytes | None) -> Lane:
        """The lane of a record whose key is ``key``."""
        return key if self.by_key else None

    def add(self, lane: Lane, item: T) -> bool:
        """Queue ``item`` in ``lane``; return True if it may start now (its lane was idle),
        False if it waits for the lane's earlier records."""
        waiting = self._busy.get(lane)
        if waiting is None:
            self._busy[lane] = deque()
            return True
        waiting.append(item)
        return False

    def add_all(self, items: List[T], keys: Callable[[T], bytes | None]) -> List[T]:
        """:meth:`add` each of ``items`` (in offset order), in the lane of its key
        (``keys(item)``); return those that may start now, in order."""
        if not items:
            return []
        if self.by_key:
            return [item for item in items if self.add(keys(item), item)]
        # One lane for the whole partition: the first may start if the lane is idle, and the
        # rest wait behind it. One call per fetched batch, not two per record.
        waiting = self._busy.get(None)
        if waiting is None:
            self._busy[None] = deque(items[1:])
            return items[:1]
        waiting.extend(items)
        return []

    def done(self, lane: Lane) -> T | None:
        """The running record of ``lane`` is settled; return the lane's next record, which
        may start now, or None (the lane is idle)."""
        waiting = self._busy.get(lane)
        if waiting is None:
            raise KeyError(f"lane {lane!r} has no record running")
        if waiting:
            return waiting.popleft()
        del self._busy[lane]
        return None

    def hold(self, lane: Lane) -> None:
        """Keep ``lane`` busy: its running record was handed back and will start again."""
        self._busy.setdefault(lane, deque())

    @property
    def waiting(self) -> int:
        """How many records wait for their lane."""
        return sum(len(waiting) for waiting in self._busy.values())

    @property
    def busy_lanes(self) -> int:
        """How many lanes have a record running (or handed back and waiting to run again)."""
        return len(self._busy)

    def clear(self) -> List[T]:
        """Forget every waiting record (the partition was revoked) and return them."""
        dropped = [item for waiting in self._busy.values() for item in waiting]
        self._busy.clear()
        return dropped


class OrderingScheduler(Generic[P, T]):
    """Every assigned partition's lanes and the records that may start now, in the order they
    became startable. ``by_key`` applies to every partition (see the module's documentation)."""

    def __init__(self, by_key: bool = False) -> None:
        self.by_key = by_key
        self.partitions: Dict[P, PartitionLanes[T]] = {}
        # (lanes, record) of the records that may start now.
        self._startable: Deque[Tuple[PartitionLanes[T], T]] = deque()

    def assign(self, partition: P) -> PartitionLanes[T]:
        """Start ordering ``partition`` afresh and return its lanes."""
        lanes = self.partitions[partition] = PartitionLanes(self.by_key)
        return lanes

    def revoke(self, partition: P) -> List[T]:
        """Stop ordering ``partition``: its lanes are marked revoked, and its records that did
        not start yet (waiting, or startable and not taken) are forgotten and returned."""
        lanes = self.partitions.pop(partition, None)
        if lanes is None:
            return []
        lanes.revoked = True
        dropped = [item for owner, item in self._startable if owner is lanes]
        if dropped:
            self._startable = deque(entry for entry in self._startable if entry[0] is not lanes)
        dropped += lanes.clear()
        return dropped

    def add(self, lanes: PartitionLanes[T], key: bytes | None, item: T) -> None:
        """Queue ``item`` (a record of the partition whose lanes are ``lanes``, with ``key``)."""
        if lanes.add(key if lanes.by_key else None, item):  # lanes.lane(key), inlined
            self._startable.append((lanes, item))

    def add_all(self, lanes: PartitionLanes[T], items: List[T], keys: Callable[[T], bytes | None]) -> None:
        """:meth:`add` each of ``items``, records of ``lanes``'s partition in offset order
        (as a fetch returns them); ``keys(item)`` is an item's key."""
        self._startable.extend((lanes, item) for item in lanes.add_all(items, keys))

    def done(self, lanes: PartitionLanes[T], key: bytes | None) -> T | None:
        """The running record with ``key`` of ``lanes``'s partition is settled; the next of
        its lane becomes startable and is returned (None if the lane is idle now). Records of
        revoked partitions are ignored."""
        following = self.take_next(lanes, key)
        if following is not None:
            self.make_startable(lanes, following)
        return following

    def take_next(self, lanes: PartitionLanes[T], key: bytes | None) -> T | None:
        """The running record with ``key`` of ``lanes``'s partition is settled; take the next
        of its lane, to run at once (as :meth:`take_entries` would: its lane stays busy), and return it,
        or None if the lane is idle now (or the partition revoked). Whoever took it runs it, or
        hands it to :meth:`make_startable`."""
        if lanes.revoked:
            return None
        return lanes.done(key if lanes.by_key else None)  # lanes.lane(key), inlined

    def make_startable(self, lanes: PartitionLanes[T], item: T) -> None:
        """``item``, the head of its lane taken by :meth:`take_next`, does not run now after
        all: it may start, for :meth:`take_entries` (ignored for a revoked partition)."""
        if lanes.revoked:
            return
        self._startable.append((lanes, item))

    def put_back(self, lanes: PartitionLanes[T], key: bytes | None, item: T) -> None:
        """``item`` was taken but handed back unhandled: it is startable again, first of its
        lane (ignored for a revoked partition)."""
        if lanes.revoked:
            return
        # Startable again at once, ahead of the rest: it heads its lane, which stays busy so
        # that nothing else of the lane passes it.
        lanes.hold(lanes.lane(key))
        self._startable.appendleft((lanes, item))

    def take_entries(self, limit: int) -> List[Tuple[PartitionLanes[T], T]]:
        """Return up to ``limit`` startable records, oldest first, each with the lanes of its
        partition; their lanes stay busy until :meth:`done` (or :meth:`take_next`)."""
        startable = self._startable
        if limit >= len(startable):
            taken = list(startable)
            startable.clear()
        else:
            taken = [startable.popleft() for _ in range(limit)]
        return taken

    @property
    def startable(self) -> int:
        """How many records may start now."""
        return len(self._startable)

    @property
    def waiting(self) -> int:
        """How many records are held: startable ones and those waiting for their lane.
        Counted when asked (a health report), not kept up to date for every record."""
        return len(self._startable) + sum(lanes.waiting for lanes in self.partitions.values())
