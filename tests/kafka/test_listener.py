"""KafkaListener against a real Kafka-protocol broker (the session's private Tansu): order,
retries, dead letters, event paths, commits, publishing."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Dict, List, Tuple

import pytest

from tests.broker_listeners import running
from tests.kafka.conftest import Tansu, Topics, read_topic
from tests.log_watch import watching_log
from tiny_listener import Data, Event, Param
from tiny_listener.kafka import KafkaListener, SubscriptionError

pytestmark = pytest.mark.broker


def make_app(tansu: Tansu, names: Topics, **options: Any) -> KafkaListener[Any]:
    options.setdefault("group", names.name("group"))
    options.setdefault("retry_backoff", 0.01)
    options.setdefault("commit_interval", 0.2)
    return KafkaListener(tansu.url, **options)


async def committed(tansu: Tansu, group: str, topic: str, partitions: int) -> List[int | None]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(topic, n)) for n in range(partitions)]
    finally:
        await consumer.stop()


async def test_partition_order_then_offsets_committed(tansu: Tansu, topics: Topics, producer: Any) -> None:
    topic = topics.name("orders")
    await topics.create(topic, partitions=3)
    app = make_app(tansu, topics, max_in_flight=10)
    seen: Dict[int, List[int]] = {0: [], 1: [], 2: []}
    running_now: Dict[int, int] = {0: 0, 1: 0, 2: 0}
    overlap = []
    done = asyncio.Event()
    total = 60

    @app.on_event(topic)
    async def order(event: Event[Any], n: Data) -> None:
        partition = event.ctx.scope["message"].partition
        running_now[partition] += 1
        overlap.append(running_now[partition])
        await asyncio.sleep(0.001 * (n % 3))  # later records may finish first if allowed to run
        seen[partition].append(n)
        running_now[partition] -= 1
        if sum(map(len, seen.values())) == total:
            done.set()

    for n in range(total):
        await producer.send(topic, json.dumps({"n": n}).encode(), partition=n % 3)
    await producer.flush()
    async with running(app):
        await asyncio.wait_for(done.wait(), 30)
    assert max(overlap) == 1, "two records of one partition ran at once"
    for partition, numbers in seen.items():
        assert numbers == list(range(partition, total, 3))
    assert await committed(tansu, app.group, topic, 3) == [20, 20, 20]


async def test_order_by_key_runs_keys_concurrently_each_in_order(tansu: Tansu, topics: Topics, producer: Any) -> None:
    topic = topics.name("keys")
    await topics.create(topic, partitions=1)
    app = make_app(tansu, topics, order="key", max_in_flight=10)
    both_in = asyncio.Event()
    release = asyncio.Event()
    started: List[Tuple[str, int]] = []
    done = asyncio.Event()

    @app.on_event(topic)
    async def keyed(event: Event[Any], n: Data) -> None:
        key = event.ctx.scope["message"].key.decode()
        started.append((key, n))
        if {k for k, _ in started} == {"a", "b"}:
            both_in.set()
        await release.wait()
        if len(started) == 6:
            done.set()

    for n in range(6):
        await producer.send(topic, json.dumps({"n": n}).encode(), key=b"a" if n < 3 else b"b")
    await producer.flush()
    async with running(app):
        # Offsets 0-2 are key a, 3-5 key b: b's first record runs while a's first still runs.
        await asyncio.wait_for(both_in.wait(), 30)
        assert started == [("a", 0), ("b", 3)]
        release.set()
        await asyncio.wait_for(done.wait(), 30)
    assert [n for k, n in started if k == "a"] == [0, 1, 2]
    assert [n for k, n in started if k == "b"] == [3, 4, 5]
    assert await committed(tansu, app.group, topic, 1) == [6]


async def test_poison_record_is_retried_then_dead_lettered_and_its_partition_moves_on(
    tansu: Tansu, topics: Topics, producer: Any
) -> None:
    topic = topics.name("jobs")
    await topics.create(topic, partitions=1)
    app = make_app(tansu, topics, max_retries=2)
    attempts: List[int] = []
    handled: List[int] = []
    done = asyncio.Event()

    @app.on_event(topic)
    async def job(event: Event[Any], n: Data) -> None:
        if n == 1:
            attempts.append(event.ctx.scope["attempt"])
            raise ValueError("poison")
        handled.append(n)
        if n == 2:
            done.set()

    for n in range(3):
        await producer.send(topic, json.dumps({"n": n}).encode(), key=b"k%d" % n, headers=[("trace", b"t%d" % n)])
    await producer.flush()
    async with running(app):
        await asyncio.wait_for(done.wait(), 30)
    assert attempts == [1, 2, 3]
    assert handled == [0, 2]
    [dead] = await read_topic(tansu.bootstrap, f"{topic}.dead", 1)
    headers = dict(dead.headers)
    assert dead.key == b"k1"
    assert json.loads(dead.value) == {"n": 1}
    assert headers["x-dead-letter-reason"] == b"handler-failed"
    assert headers["x-last-error"] == b"ValueError('poison')"
    assert headers["x-attempt"] == b"3"
    assert headers["x-original-topic"] == topic.encode()
    assert headers["x-original-partition"] == b"0"
    assert headers["x-original-offset"] == b"1"
    assert headers["x-original-key"] == b"k1"
    assert headers["trace"] == b"t1"
    assert await committed(tansu, app.group, topic, 1) == [3]


async def test_undecodable_and_no_route_records_are_dead_lettered_at_once(
    tansu: Tansu, topics: Topics, producer: Any
) -> None:
    topic = topics.name("mixed")
    await topics.create(topic, partitions=1)
    app = make_app(tansu, topics, topics=[topic], path_from="header-or-topic")
    handled: List[Any] = []
    done = asyncio.Event()

    @app.on_event(topic)
    async def plain(n: Data) -> None:
        handled.append(n)
        if n == 3:
            done.set()

    await producer.send(topic, b"{not json")
    await producer.send(topic, b'{"n": 2}', headers=[("x-event-path", b"nowhere")])
    await producer.send(topic, b'{"n": 3}')
    await producer.flush()
    async with running(app):
        await asyncio.wait_for(done.wait(), 30)
    assert handled == [3]
    # The dead-letter topic is made on first use, with the broker's default partitions: the two
    # dead letters (no key) may be in different partitions, so their order is not kept.
    dead = {dict(record.headers)["x-dead-letter-reason"]: record for record in
            await read_topic(tansu.bootstrap, f"{topic}.dead", 2)}
    assert sorted(dead) == [b"no-route", b"undecodable"]
    assert {dict(record.headers)["x-attempt"] for record in dead.values()} == {b"1"}
    assert dead[b"undecodable"].value == b"{not json"
    assert dict(dead[b"no-route"].headers)["x-event-path"] == b"nowhere"


async def test_a_route_with_parameters_subscribes_by_pattern(tansu: Tansu, topics: Topics, producer: Any) -> None:
    eu, us = topics.name("region.eu"), topics.name("region.us")
    await topics.create(eu, us, partitions=1)
    app = make_app(tansu, topics)
    seen: List[Tuple[str, str]] = []
    done = asyncio.Event()

    @app.on_event(topics.name("region.{name}"))
    async def region(name: Param, n: Data) -> None:
        seen.append((name, n))
        if len(seen) == 2:
            done.set()

    await producer.send(eu, b'{"n": 1}')
    await producer.send(us, b'{"n": 2}')
    await producer.flush()
    async with running(app):
        assert app.source.subscription is not None and app.source.subscription.pattern is not None
        assert re.match(app.source.subscription.pattern, eu)
        await asyncio.wait_for(done.wait(), 30)
    assert sorted(seen) == [("eu", 1), ("us", 2)]


async def test_a_route_that_cannot_be_a_subscription_fails_the_start(tansu: Tansu, topics: Topics) -> None:
    app = make_app(tansu, topics)

    @app.on_event("orders:{id}:created")
    async def orders() -> None: ...

    with pytest.raises(SubscriptionError, match=r"'orders:{id}:created' .* cannot be a Kafka subscription"):
        await asyncio.wait_for(app.main(), 30)


@pytest.mark.parametrize("setting", ["fetch_timeout", "commit_timeout", "unreachable_after"])
async def test_a_timing_attribute_that_is_not_positive_fails_the_start(setting: str) -> None:
    app: KafkaListener[Any] = KafkaListener("kafka://127.0.0.1:1", topics="orders")  # never reached
    setattr(app, setting, 0)
    with pytest.raises(ValueError, match=f"{setting} must be a positive number of seconds, not 0"):
        await asyncio.wait_for(app.main(), 30)


@pytest.mark.parametrize("value", [0, 2.5])
async def test_a_fetch_batch_that_is_not_a_count_fails_the_start(value: Any) -> None:
    app: KafkaListener[Any] = KafkaListener("kafka://127.0.0.1:1", topics="orders")  # never reached
    app.fetch_batch = value
    with pytest.raises(ValueError, match=f"fetch_batch must be at least 1, not {value}"):
        await asyncio.wait_for(app.main(), 30)


async def test_publish_through_the_codec_with_key_and_headers(tansu: Tansu, topics: Topics) -> None:
    topic = topics.name("out")
    await topics.create(topic, partitions=2)
    app = make_app(tansu, topics, topics=[topic])
    async with running(app):
        metadata = await app.publish(topic, {"a": 1}, key="k", headers={"h": "v"})
    [record] = await read_topic(tansu.bootstrap, topic, 1)
    assert (record.partition, record.offset) == (metadata.partition, metadata.offset)
    assert (record.key, json.loads(record.value), list(record.headers)) == (b"k", {"a": 1}, [("h", b"v")])


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=re.escape("Kafka URL 'nats://127.0.0.1:4222' has scheme 'nats': expected kafka://")):
        KafkaListener("nats://127.0.0.1:4222")
    with pytest.raises(ValueError, match=re.escape("Kafka URL '127.0.0.1:9092' has no scheme: expected kafka://")):
        KafkaListener("127.0.0.1:9092")
    with pytest.raises(ValueError, match="not host:port"):
        KafkaListener("kafka://a:1,b")
    with pytest.raises(ValueError, match="path_from"):
        KafkaListener(path_from="body")
    with pytest.raises(ValueError, match="order"):
        KafkaListener(order="random")
    with pytest.raises(ValueError, match="commit_interval"):
        KafkaListener(commit_interval=0)
    app: KafkaListener[Any] = KafkaListener("kafka://k1:9092,k2:9093")
    assert app.source.bootstrap_servers == "k1:9092,k2:9093"
    assert app.dead_letter_target == "{topic}.dead"


async def test_a_partition_holds_at_most_max_buffered_records(tansu: Tansu, topics: Topics, producer: Any) -> None:
    topic = topics.name("buffered")
    await topics.create(topic, partitions=1)
    app = make_app(tansu, topics, max_buffered=10)
    release = asyncio.Event()
    first_in = asyncio.Event()
    handled: List[int] = []
    done = asyncio.Event()

    @app.on_event(topic)
    async def slow(n: Data) -> None:
        first_in.set()
        await release.wait()
        handled.append(n)
        if len(handled) == 100:
            done.set()

    for n in range(100):
        await producer.send(topic, json.dumps({"n": n}).encode())
    await producer.flush()
    async with running(app):
        await asyncio.wait_for(first_in.wait(), 30)
        # Ten records were taken in, the bound, and the partition paused: the first runs, nine
        # wait their turn, and a second later nothing more has come in.
        await asyncio.sleep(1.0)
        assert app.source.health()["buffered"] == 9
        release.set()
        await asyncio.wait_for(done.wait(), 30)
    assert handled == list(range(100))  # each once, in order


async def test_records_are_taken_from_the_fetch_fetch_batch_at_a_time(
    tansu: Tansu, topics: Topics, producer: Any
) -> None:
    topic = topics.name("batch")
    await topics.create(topic, partitions=1)
    app = make_app(tansu, topics)
    app.fetch_batch = 5
    buffered: List[int] = []
    handled: List[int] = []
    done = asyncio.Event()

    @app.on_event(topic)
    async def take(n: Data) -> None:
        buffered.append(app.source.health()["buffered"])
        handled.append(n)
        if len(handled) == 200:
            done.set()

    for n in range(200):
        await producer.send(topic, json.dumps({"n": n}).encode())
    await producer.flush()
    async with running(app):
        await asyncio.wait_for(done.wait(), 30)
    assert handled == list(range(200))  # each once, in order
    # One fetch brought them all, and they were taken 5 at a time, one batch a turn of the event
    # loop: a few batches wait while the flow's worker gets going (4 here), not the 199 behind
    # the first that taking them all at once leaves waiting.
    assert max(buffered) <= 5 * 5


async def test_a_paused_partition_holds_up_no_other(tansu: Tansu, topics: Topics, producer: Any) -> None:
    topic = topics.name("paused")
    await topics.create(topic, partitions=2)
    # Two records a fetch at most: partition 1's 60 records take 30 fetches or more, all made
    # while partition 0 is paused, holding its 4 records.
    app = make_app(tansu, topics, max_buffered=4)
    release = asyncio.Event()
    others_done = asyncio.Event()
    seen: Dict[int, List[int]] = {0: [], 1: []}
    buffered: List[int] = []
    done = asyncio.Event()

    @app.on_event(topic)
    async def take(n: Data, p: Data) -> None:
        if p == 0:
            await release.wait()
        buffered.append(app.source.health()["buffered"])
        seen[p].append(n)
        if len(seen[1]) == 60:
            others_done.set()
        if len(seen[0]) + len(seen[1]) == 80:
            done.set()

    for n in range(20):
        await producer.send(topic, json.dumps({"n": n, "p": 0}).encode(), partition=0)
    for n in range(60):
        await producer.send(topic, json.dumps({"n": n, "p": 1}).encode(), partition=1)
    await producer.flush()
    async with running(app):
        await asyncio.wait_for(others_done.wait(), 30)  # partition 1 did not wait for partition 0
        assert seen[0] == []
        release.set()
        await asyncio.wait_for(done.wait(), 30)
    assert seen == {0: list(range(20)), 1: list(range(60))}  # each once, in order
    # Each partition holds max_buffered (4) records at most besides its running one; without
    # the pause, partition 0 would hold all 19 behind its first.
    assert max(buffered) <= 2 * 4


async def test_revoked_partition_waits_revoke_timeout_then_its_new_owner_gets_the_record(
    tansu: Tansu, topics: Topics, producer: Any
) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = topics.name("revoked")
    await topics.create(topic, partitions=1)
    app = make_app(tansu, topics, revoke_timeout=0.5)
    started = asyncio.Event()
    release = asyncio.Event()
    deliveries: List[int] = []

    @app.on_event(topic)
    async def stuck(event: Event[Any]) -> None:
        deliveries.append(event.ctx.scope["message"].offset)
        started.set()
        await release.wait()

    await producer.send_and_wait(topic, b'{"n": 0}')
    with watching_log("tiny_listener.kafka", "still running after 0.5s") as revoked_late:
        async with running(app):
            await asyncio.wait_for(started.wait(), 30)
            # A second member joins the group: the partition is revoked from the listener while
            # its record is still running.
            other = AIOKafkaConsumer(topic, bootstrap_servers=tansu.bootstrap, group_id=app.group,
                                     enable_auto_commit=False, auto_offset_reset="earliest")
            await other.start()
            try:
                await asyncio.wait_for(revoked_late.wait(), 30)
                # Nothing was committed past the record: whoever owns the partition now gets it.
                seen_by_other: List[int] = []

                async def delivered_again() -> None:
                    while deliveries.count(0) < 2 and not seen_by_other:
                        batch = await other.getmany(timeout_ms=200)
                        seen_by_other.extend(record.offset for records in batch.values() for record in records)

                await asyncio.wait_for(delivered_again(), 30)
                assert deliveries.count(0) == 2 or seen_by_other == [0]
            finally:
                release.set()
                await other.stop()
    assert revoked_late.seen == 1


async def test_the_dead_letter_log_line_names_the_topic_it_went_to(tansu: Tansu, topics: Topics, producer: Any) -> None:
    topic = topics.name("logged")
    await topics.create(topic, partitions=1)
    app = make_app(tansu, topics, topics=[topic])
    await producer.send_and_wait(topic, b"{broken")
    with watching_log("tiny_listener.kafka", f"dead-lettered to '{topic}.dead' (undecodable)") as logged:
        async with running(app):
            await asyncio.wait_for(logged.wait(), 30)
