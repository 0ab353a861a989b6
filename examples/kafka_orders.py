"""Order workers on Kafka: a consumer group spreading the partitions of two topics.

Needs a Kafka broker on 127.0.0.1:9092 (or set KAFKA_URL, ``kafka://host:port``) and
``pip install 'tiny-listener[kafka]'``. Create the topics, then start one or more workers, in
separate terminals:

    python examples/kafka_orders.py create-topics          # orders and payments, 6 partitions each
    tiny-listener --app-dir examples kafka_orders:app

The workers join the consumer group ``billing``, which spreads the 12 partitions over them and
moves them when a worker joins or leaves. Publish 20 orders, plus one that fails every time and
one that is not JSON:

    python examples/kafka_orders.py publish 20

Orders of one customer are keyed by the customer, so they land in one partition and are
handled in the order they were published. The failing order is retried 3 times (after 0.5 s,
1 s, 2 s) while the other orders of its partition wait, then dead-lettered to ``orders.dead``
with the error in its headers, and the partition moves on; the one that is not JSON is
dead-lettered at once. Read the dead letters with:

    python examples/kafka_orders.py dead-letters

``kill -9`` a worker while it handles orders: the group gives its partitions to the others,
which start from the last committed offset (records it handled but had not committed yet are
handled again). Ctrl-C stops a worker after the orders it is handling are done and committed.
"""

import asyncio
import os
import random
import sys

from tiny_listener import Data, Event
from tiny_listener.kafka import DEAD_LETTER_REASON, LAST_ERROR, ORIGINAL_OFFSET, ORIGINAL_PARTITION, KafkaListener

KAFKA_URL = os.environ.get("KAFKA_URL", "kafka://127.0.0.1:9092")
BOOTSTRAP = KAFKA_URL.split("://", 1)[1]

app = KafkaListener(KAFKA_URL, group="billing", max_retries=3)


@app.on_event("orders")
async def order(event: Event, order_id: Data, customer: Data, amount: Data) -> None:
    if customer == "mallory":
        raise ValueError(f"card of {customer} declined")
    await asyncio.sleep(random.uniform(0.01, 0.05))  # the payment provider
    record = event.ctx.scope["message"]
    print(f"order {order_id}: charged {amount} to {customer} (partition {record.partition}, offset {record.offset})")
    # Stored by every in-sync replica before this returns; handled by the worker that owns
    # the partition of the customer's key.
    await app.publish("payments", {"order_id": order_id, "customer": customer, "amount": amount}, key=customer)


@app.on_event("payments")
async def send_receipt(order_id: Data, customer: Data, amount: Data) -> None:
    print(f"order {order_id}: receipt for {amount} sent to {customer}")


async def create_topics() -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 6, 1) for name in ("orders", "payments")])
    finally:
        await admin.close()
    print("created topics orders and payments, 6 partitions each")


async def publish(count: int) -> None:
    import json

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for n in range(count):
            customer = f"c{n % 3}"
            order = {"order_id": n, "customer": customer, "amount": random.randint(5, 50)}
            await producer.send("orders", json.dumps(order).encode(), key=customer.encode())
        poison = {"order_id": count, "customer": "mallory", "amount": 1}
        await producer.send("orders", json.dumps(poison).encode(), key=b"mallory")
        await producer.send("orders", b"\xff not json", key=b"garbage")
        await producer.flush()
    finally:
        await producer.stop()
    print(f"published {count + 2} records to the orders topic")


async def dead_letters() -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer("orders.dead", bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        for records in batch.values():
            for record in records:
                headers = {name: value.decode(errors="replace") for name, value in record.headers}
                print(f"{record.value!r}: {headers[DEAD_LETTER_REASON]}, {headers[LAST_ERROR]} "
                      f"(was partition {headers[ORIGINAL_PARTITION]}, offset {headers[ORIGINAL_OFFSET]})")
    finally:
        await consumer.stop()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "create-topics":
        asyncio.run(create_topics())
    elif command == "publish":
        asyncio.run(publish(int(sys.argv[2]) if len(sys.argv) > 2 else 20))
    elif command == "dead-letters":
        asyncio.run(dead_letters())
    else:
        sys.exit(__doc__)
