"""The test broker itself: Tansu serves what the Kafka source relies on (topics with
partitions, consumer groups and their commits, headers, keys)."""

from __future__ import annotations

from typing import Any

from tests.kafka.conftest import Tansu, Topics, read_topic


async def test_tansu_keeps_keys_headers_and_partitions(tansu: Tansu, topics: Topics, producer: Any) -> None:
    topic = topics.name("smoke")
    await topics.create(topic, partitions=3)
    for n in range(3):
        await producer.send_and_wait(topic, b"v%d" % n, key=b"k", headers=[("h", b"%d" % n)], partition=n)
    records = sorted(await read_topic(tansu.bootstrap, topic, 3), key=lambda record: record.partition)
    assert [(r.partition, r.key, r.value, list(r.headers)) for r in records] == [
        (n, b"k", b"v%d" % n, [("h", b"%d" % n)]) for n in range(3)
    ]
