"""The Redis source's batched acknowledgements (``AckBatcher``): one XACK per batch, acks that
do not wait for Redis unless too many are queued, and a batch that cannot be sent said once.
(Grouping a batch by stream is the source's: tests/redis/test_flow.py reads several streams.)"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, List, Tuple

import pytest

from tiny_listener.redis._acks import AckBatcher

pytestmark = pytest.mark.timeout(10)


class Sender:
    """A send function that records each batch and is released batch by batch by the test."""

    def __init__(self) -> None:
        self.batches: List[List[str]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self, messages: List[str]) -> None:
        self.batches.append(messages)
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error


NotSentCalls = List[Tuple[int, BaseException]]


def make_batcher(sender: Sender, max_pending: int = 100) -> Tuple[AckBatcher[str], NotSentCalls, List[Any]]:
    not_sent: NotSentCalls = []
    tasks: List[asyncio.Task[Any]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.append(task)
        return task

    def said(count: int, error: BaseException) -> None:
        not_sent.append((count, error))

    batcher: AckBatcher[str] = AckBatcher(sender, spawn, said, max_pending)
    return batcher, not_sent, tasks


async def test_acks_made_while_a_batch_is_sent_go_in_one_next_batch() -> None:
    sender = Sender()
    batcher, not_sent, tasks = make_batcher(sender)
    assert batcher.queue("1-0") is None  # nothing to wait for: the XACK is not awaited
    await sender.started.wait()
    for n in range(2, 6):
        assert batcher.queue(f"{n}-0") is None
    assert batcher.pending == 4
    sender.release.set()
    await asyncio.gather(*tasks)
    assert sender.batches == [["1-0"], ["2-0", "3-0", "4-0", "5-0"]]
    assert batcher.pending == 0 and not_sent == []


async def test_an_ack_waits_for_redis_only_once_max_pending_acks_are_queued() -> None:
    sender = Sender()
    batcher, _, tasks = make_batcher(sender, max_pending=3)
    assert batcher.queue("1-0") is None
    await sender.started.wait()
    assert batcher.queue("2-0") is None
    assert batcher.queue("3-0") is None
    third = batcher.queue("4-0")  # the third queued: to be waited for
    assert third is not None
    await asyncio.sleep(0)
    assert not asyncio.ensure_future(third).done()
    sender.release.set()
    await third
    assert sender.batches == [["1-0"], ["2-0", "3-0", "4-0"]]
    await asyncio.gather(*tasks)


async def test_a_batch_that_cannot_be_sent_is_said_once_and_not_raised() -> None:
    sender = Sender()
    sender.error = ConnectionError("closed")
    batcher, not_sent, tasks = make_batcher(sender)
    assert batcher.queue("1-0") is None
    await sender.started.wait()
    assert batcher.queue("2-0") is None
    sender.release.set()
    await asyncio.gather(*tasks)  # the flushing task ends without an error
    # The failed batch and the ack queued behind it: one line for both.
    assert [(count, repr(error)) for count, error in not_sent] == [(2, repr(sender.error))]
    assert batcher.pending == 0
