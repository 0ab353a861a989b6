"""Which offsets of a partition may be committed, without any network code.

Kafka keeps one committed offset per partition and group: the next record a consumer of the
group starts from after a restart or a rebalance. Records of one partition may finish out of
order here (different keys run concurrently, a retried record finishes late), so the offset
committed is the lowest one still unfinished: a record finishing early never commits past one
still running or still waiting its turn, and nothing unfinished is skipped by a restart.

:class:`PartitionOffsets` holds one partition's state; :class:`OffsetTracker` holds every
partition assigned to the consumer and says what to commit, in batches.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Generic, Hashable, Iterable, List, Set, TypeVar

P = TypeVar("P", bound=Hashable)


class OffsetError(ValueError):
    """An offset was reported out of order, or finished without having been received."""


class PartitionOffsets:
    """The offsets of one partition received by this consumer and not yet committed.

    ``received(offset)`` is called for every record taken from Kafka, in offset order (offsets
    may have gaps: compacted records, transaction markers); ``finished(offset)`` when its event
    is settled (handled, dead-lettered or dropped), in any order. :attr:`committable` is the
    offset to commit.
    """

    __slots__ = ("_finished", "_last_received", "_unfinished", "committed")

    def __init__(self, committed: int | None = None) -> None:
        # Received offsets in order; those at the front that finished are popped lazily.
        self._unfinished: Deque[int] = deque()
        self._finished: Set[int] = set()
        self._last_received = -1
        self.committed = committed
        """The offset last committed (by this consumer or found at assignment), or None."""

    def received(self, offset: int) -> None:
        """A record at ``offset`` was taken in; raises :class:`OffsetError` unless it comes
        after every offset received before."""
        if offset <= self._last_received:
            raise OffsetError(f"offset {offset} received after offset {self._last_received}: records come in order")
        self._unfinished.append(offset)
        self._last_received = offset

    def finished(self, offset: int) -> None:
        """The record at ``offset`` is settled; raises :class:`OffsetError` if it is already
        finished or outside the offsets in flight (an offset inside them is taken on trust:
        looking it up would cost a scan per record)."""
        unfinished = self._unfinished
        if unfinished and unfinished[0] == offset:
            unfinished.popleft()
            finished = self._finished
            while unfinished and unfinished[0] in finished:
                finished.discard(unfinished.popleft())
            return
        if offset in self._finished or not unfinished or offset < unfinished[0] or offset > self._last_received:
            raise OffsetError(f"offset {offset} finished but it is not in flight")
        self._finished.add(offset)

    def received_all(self, offsets: List[int]) -> None:
        """Records at ``offsets`` were taken in, as :meth:`received` for each; they ascend, as
        a fetch returns a partition's records (only their ends are checked: this runs for
        every fetched batch)."""
        if not offsets:
            return
        if offsets[0] <= self._last_received or offsets[-1] < offsets[0]:
            raise OffsetError(f"offsets {offsets[0]}..{offsets[-1]} received after offset {self._last_received}: "
                              "records come in order")
        self._unfinished.extend(offsets)
        self._last_received = offsets[-1]

    @property
    def last_received(self) -> int:
        """The highest offset received, -1 before any."""
        return self._last_received

    @property
    def unfinished(self) -> int:
        """How many received records are not finished yet."""
        return len(self._unfinished) - len(self._finished)

    @property
    def committable(self) -> int | None:
        """The offset to commit: the lowest unfinished one, else the one after the last
        received; None before anything was received."""
        if self._unfinished:
            return self._unfinished[0]
        if self._last_received < 0:
            return None
        return self._last_received + 1

    def to_commit(self) -> int | None:
        """The offset to commit if it moved past :attr:`committed`, else None."""
        offset = self.committable
        if offset is None or (self.committed is not None and offset <= self.committed):
            return None
        return offset

    def __repr__(self) -> str:
        return (f"PartitionOffsets(committed={self.committed}, committable={self.committable}, "
                f"unfinished={self.unfinished})")


class OffsetTracker(Generic[P]):
    """The offsets of every partition assigned to one consumer, keyed by partition (a
    ``TopicPartition`` in the listener, anything hashable in tests).

    Commits are batched: :meth:`due` turns true once ``batch`` records finished since the last
    :meth:`to_commit`; the caller also commits on a timer, at revocation and at shutdown.
    """

    def __init__(self, batch: int = 1000) -> None:
        if batch < 1:
            raise ValueError(f"a commit batch holds at least 1 record, not {batch}")
        self.batch = batch
        self.partitions: Dict[P, PartitionOffsets] = {}
        self._finished_since_commit = 0

    def assign(self, partition: P, committed: int | None = None) -> PartitionOffsets:
        """Start tracking ``partition`` afresh (an assignment) and return its offsets."""
        offsets = self.partitions[partition] = PartitionOffsets(committed)
        return offsets

    def revoke(self, partition: P) -> PartitionOffsets | None:
        """Stop tracking ``partition``; return its offsets (None if it was not tracked)."""
        return self.partitions.pop(partition, None)

    def finished(self, offsets: PartitionOffsets, offset: int) -> bool:
        """``offset`` of the partition whose state is ``offsets`` finished (see
        :meth:`PartitionOffsets.finished`), counted towards the next batch; return True if
        it made the batch :attr:`due` (once per batch: the caller wakes its committer then,
        not for every record finishing before the commit)."""
        unfinished = offsets._unfinished
        if unfinished and unfinished[0] == offset and not offsets._finished:
            # PartitionOffsets.finished(), inlined for records finishing in offset order (a
            # partition's records run one at a time unless ordered by key).
            unfinished.popleft()
        else:
            offsets.finished(offset)
        finished = self._finished_since_commit = self._finished_since_commit + 1
        return finished == self.batch

    @property
    def due(self) -> bool:
        """True once a batch of records finished since the last :meth:`to_commit`."""
        return self._finished_since_commit >= self.batch

    def to_commit(self, partitions: Iterable[P] | None = None) -> Dict[P, int]:
        """Return ``{partition: offset}`` for every partition (of ``partitions``, default all)
        whose committable offset moved; call :meth:`committed` once Kafka stored them."""
        self._finished_since_commit = 0
        chosen = self.partitions if partitions is None else partitions
        found: Dict[P, int] = {}
        for partition in chosen:
            offsets = self.partitions.get(partition)
            if offsets is None:
                continue
            offset = offsets.to_commit()
            if offset is not None:
                found[partition] = offset
        return found

    def committed(self, commits: Dict[P, int]) -> None:
        """Kafka stored ``commits`` (what :meth:`to_commit` returned); partitions revoked in
        the meantime are ignored."""
        for partition, offset in commits.items():
            offsets = self.partitions.get(partition)
            if offsets is not None and (offsets.committed is None or offset > offsets.committed):
                offsets.committed = offset
