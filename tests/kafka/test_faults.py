"""KafkaListener when no broker answers: the outage is said once, the source reconnects, and
consuming resumes once the broker is back. Each test kills its own Tansu broker (the shared
one is never stopped)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any, List, Tuple

import pytest

from tests.broker_listeners import running
from tests.kafka.conftest import Tansu, Topics
from tests.log_watch import watching_log
from tiny_listener import Data
from tiny_listener.kafka import KafkaListener
from tiny_listener.sources import SourceState

pytestmark = pytest.mark.broker


class Handled:
    """The numbers an app's handler saw; ``wait(count)`` returns once ``count`` distinct ones were."""

    def __init__(self) -> None:
        self.numbers: List[int] = []
        self._changed = asyncio.Event()

    def add(self, n: int) -> None:
        self.numbers.append(n)
        self._changed.set()

    async def wait(self, count: int) -> None:
        while len(set(self.numbers)) < count:
            self._changed.clear()
            await self._changed.wait()


async def create_again(topics: Topics, topic: str) -> None:
    """Create ``topic`` on a restarted broker (Tansu keeps topics in memory only)."""
    from aiokafka.errors import TopicAlreadyExistsError

    with contextlib.suppress(TopicAlreadyExistsError):  # made by a client's metadata request already
        await topics.create(topic, partitions=2)


async def orders_app(broker: Tansu, **options: Any) -> Tuple[KafkaListener[Any], Topics, str, Handled]:
    """A listener of a new two-partition topic on ``broker``, whose handler notes each ``n``."""
    topics = Topics(broker.bootstrap)
    topic = topics.name("orders")
    await topics.create(topic, partitions=2)
    app: KafkaListener[Any] = KafkaListener(broker.url, group=topics.name("group"), topics=[topic], **options)
    handled = Handled()

    @app.on_event(topic)
    async def order(n: Data) -> None:
        handled.add(n)

    return app, topics, topic, handled


async def test_an_outage_is_said_once_then_the_listener_reconnects_and_consumes_again(
    own_tansu: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # A topic made after the listener subscribed is found at the next metadata refresh.
    app, topics, topic, handled = await orders_app(
        own_tansu, max_reconnect_delay=0.5, consumer_options={"metadata_max_age_ms": 500}
    )
    app.unreachable_after = 2.0

    async with running(app):
        for n in range(5):
            await app.publish(topic, {"n": n})
        await asyncio.wait_for(handled.wait(5), 30)
        with watching_log("tiny_listener.kafka", "is unreachable: consuming stopped") as lost:
            await asyncio.to_thread(own_tansu.kill)
            await asyncio.wait_for(lost.wait(), 30)
        assert app.source.health()["state"] == SourceState.RECONNECTING.value
        assert not app.connected
        with watching_log("tiny_listener.kafka", "reconnected to Kafka") as back, \
                watching_log("tiny_listener.kafka", f"assigned {topic}[") as assigned:
            await asyncio.to_thread(own_tansu.start)
            await create_again(topics, topic)
            await asyncio.wait_for(back.wait(), 60)
            assert app.source.health()["state"] == SourceState.READY.value
            await asyncio.wait_for(assigned.wait(), 30)
        for n in range(5, 10):
            await app.publish(topic, {"n": n})
        await asyncio.wait_for(handled.wait(10), 30)

    assert sorted(set(handled.numbers)) == list(range(10))
    lost_lines = [record for record in caplog.records if "consuming stopped" in record.getMessage()]
    assert [(record.name, record.levelno) for record in lost_lines] == [("tiny_listener.kafka", logging.WARNING)]
    assert "no broker answered for" in lost_lines[0].getMessage()
    # aiokafka's own lines (several a second while no broker answers) are demoted to DEBUG.
    assert [record.getMessage() for record in caplog.records
            if record.name.startswith("aiokafka") and record.levelno > logging.DEBUG] == []


async def test_a_quiet_topic_is_not_an_outage(tansu: Tansu, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    topics = Topics(tansu.bootstrap)
    topic = topics.name("quiet")
    await topics.create(topic, partitions=1)
    app: KafkaListener[Any] = KafkaListener(tansu.url, group=topics.name("group"), topics=[topic])
    app.unreachable_after = 0.5  # the broker is asked every 0.125 s while no record comes

    @app.on_event(topic)
    async def nothing() -> None: ...

    async with running(app):
        # Nothing to await: "no outage said" can only be seen over a span, here 6 times
        # unreachable_after with no record at all.
        await asyncio.sleep(3.0)
        assert app.source.state is SourceState.READY
    assert [record.getMessage() for record in caplog.records if "unreachable" in record.getMessage()] == []


async def test_stopping_while_no_broker_answers_closes_the_clients_at_once(
    own_tansu: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Nothing committed before the broker dies: the last commit at shutdown would have work.
    app, _, topic, handled = await orders_app(own_tansu, commit_interval=60.0)

    task = asyncio.create_task(app.main())
    try:
        await asyncio.wait_for(app.wait_connected(), 30)
        for n in range(3):
            await app.publish(topic, {"n": n})
        await asyncio.wait_for(handled.wait(3), 30)
        await asyncio.to_thread(own_tansu.kill)
    finally:
        app.stop()
        await asyncio.wait_for(task, 60)
    gc.collect()  # aiokafka reports a client left open when it is collected

    said = [record.getMessage() for record in caplog.records]
    assert [line for line in said if "not committed" in line] == [
        f"no Kafka broker answers: offsets of {topic}[0,1] not committed; the records finished since the last "
        "commit will be handled again"
    ]
    # A commit waiting for a broker that is gone would outlast the time shutdown gives the
    # source to close, and leave aiokafka's clients open.
    assert [line for line in said if "did not close" in line or "Unclosed" in line] == []


async def test_a_broker_lost_in_the_middle_of_a_rebalance_is_an_outage_like_any_other(
    own_tansu: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker dies while this consumer is inside a rebalance (revoking its partitions,
    waiting for a running event): the revocation ends, the outage is said once, and the
    listener joins the group again and consumes once the broker is back."""
    caplog.set_level(logging.INFO)
    topics = Topics(own_tansu.bootstrap)
    topic = topics.name("orders")
    await topics.create(topic, partitions=2)
    app: KafkaListener[Any] = KafkaListener(
        own_tansu.url, group=topics.name("group"), topics=[topic], max_reconnect_delay=0.5, revoke_timeout=60.0,
        consumer_options={"metadata_max_age_ms": 500},
    )
    app.unreachable_after = 2.0
    app.commit_timeout = 2.0
    handled = Handled()
    started, release = asyncio.Event(), asyncio.Event()

    @app.on_event(topic)
    async def order(n: Data) -> None:
        if n == 1:  # holds the rebalance open until released
            started.set()
            await release.wait()
        handled.add(n)

    # A second worker of the group, which starts joining once the first is busy.
    joiner: KafkaListener[Any] = KafkaListener(own_tansu.url, group=topics.name("group"), topics=[topic])
    joiner.on_event(topic)(order)
    async with running(app):
        await app.publish(topic, {"n": 0})
        await asyncio.wait_for(handled.wait(1), 30)
        await app.publish(topic, {"n": 1})
        await asyncio.wait_for(started.wait(), 30)
        # The second worker joins: the first is asked to revoke its partitions and waits (up
        # to revoke_timeout) for its running event before it can join again; the group's
        # rebalance waits for it meanwhile.
        with watching_log("tiny_listener.kafka", "being revoked: waiting up to 60.0s for 1 running event") as revoking:
            joining = asyncio.create_task(joiner.main())
            await asyncio.wait_for(revoking.wait(), 30)
        with watching_log("tiny_listener.kafka", "is unreachable: consuming stopped") as lost:
            await asyncio.to_thread(own_tansu.kill)
            release.set()  # the revocation goes on with no broker: its commit fails
            joiner.stop()  # still joining: it leaves without a broker
            await asyncio.wait_for(joining, 60)
            await asyncio.wait_for(lost.wait(), 60)
        with watching_log("tiny_listener.kafka", "reconnected to Kafka") as back, \
                watching_log("tiny_listener.kafka", f"assigned {topic}[") as assigned:
            await asyncio.to_thread(own_tansu.start)
            await create_again(topics, topic)
            await asyncio.wait_for(back.wait(), 60)
            await asyncio.wait_for(assigned.wait(), 30)
        for n in range(2, 6):
            await app.publish(topic, {"n": n})
        await asyncio.wait_for(handled.wait(6), 30)

    assert sorted(set(handled.numbers)) == list(range(6))
    said = [record.getMessage() for record in caplog.records if record.name == "tiny_listener.kafka"]
    assert len([line for line in said if "consuming stopped" in line]) == 1
    # The revocation's commit found no broker: said so, not "committed".
    assert [line for line in said if "could not commit offsets" in line]
    assert f"partitions {topic}[0,1] revoked: 1 running event(s) finished, offsets not committed" in said
