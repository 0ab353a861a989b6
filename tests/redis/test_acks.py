"""The Redis source's batched acknowledgements (``AckBatcher``): one XACK per batch, acks that
do not wait for Redis unless too many are queued, and a batch that cannot be sent said once."""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Dict, List, Tuple

import pytest

from tiny_listener.redis._acks import AckBatcher

pytestmark = pytest.mark.timeout(10)


class Sender:
    """A send function that records each batch and is released batch by batch by the test."""

    def __init__(self) -> None:
        self.batches: List[Dict[str, List[bytes]]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self, ids: Dict[str, List[bytes]]) -> None:
        self.batches.append(ids)
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error


NotSentCalls = List[Tuple[int, BaseException]]


def make_batcher(sender: Sender, max_pending: int = 100) -> Tuple[AckBatcher, NotSentCalls, List[Any]]:
    not_sent: NotSentCalls = []
    tasks: List[asyncio.Task[Any]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.append(task)
        return task

    batcher = AckBatcher(sender, spawn, lambda count, error: not_sent.append((count, error)), max_pending)
    return batcher, not_sent, tasks


async def test_acks_made_while_a_batch_is_sent_go_in_one_next_batch() -> None:
    sender = Sender()
    batcher, not_sent, tasks = make_batcher(sender)
    assert batcher.queue("s1", b"1-0") is None  # nothing to wait for: the XACK is not awaited
    await sender.started.wait()
    for n in range(2, 6):
        assert batcher.queue("s1" if n % 2 else "s2", f"{n}-0".encode()) is None
    assert batcher.pending == 4
    sender.release.set()
    await asyncio.gather(*tasks)
    assert sender.batches == [{"s1": [b"1-0"]}, {"s2": [b"2-0", b"4-0"], "s1": [b"3-0", b"5-0"]}]
    assert batcher.pending == 0 and not_sent == []


async def test_an_ack_waits_for_redis_only_once_max_pending_acks_are_queued() -> None:
    sender = Sender()
    batcher, _, tasks = make_batcher(sender, max_pending=3)
    assert batcher.queue("s", b"1-0") is None
    await sender.started.wait()
    assert batcher.queue("s", b"2-0") is None
    assert batcher.queue("s", b"3-0") is None
    third = batcher.queue("s", b"4-0")  # the third queued: to be waited for
    assert third is not None
    await asyncio.sleep(0)
    assert not asyncio.ensure_future(third).done()
    sender.release.set()
    await third
    assert [ids["s"] for ids in sender.batches] == [[b"1-0"], [b"2-0", b"3-0", b"4-0"]]
    await asyncio.gather(*tasks)


async def test_a_batch_that_cannot_be_sent_is_said_once_and_not_raised() -> None:
    sender = Sender()
    sender.error = ConnectionError("closed")
    batcher, not_sent, tasks = make_batcher(sender)
    assert batcher.queue("s", b"1-0") is None
    await sender.started.wait()
    assert batcher.queue("s", b"2-0") is None
    sender.release.set()
    await asyncio.gather(*tasks)  # the flushing task ends without an error
    # The failed batch and the ack queued behind it: one line for both.
    assert [(count, repr(error)) for count, error in not_sent] == [(2, repr(sender.error))]
    assert batcher.pending == 0
