"""Order workers on NATS JetStream: one durable pull consumer shared by every worker.

Needs nats-server with JetStream on 127.0.0.1:4222 (``nats-server -js``, or set NATS_URL)
and ``pip install 'tiny-listener[nats]'``. Start one or more workers, in separate terminals:

    tiny-listener --app-dir examples nats_orders:app

The first one creates the ``ORDERS`` stream on the subjects of the routes (``orders.*.created``,
``orders.*.charged``, ``orders.*.cancelled``), its ``ORDERS_dead`` dead-letter stream and the
durable consumer ``billing``. Then publish 20 orders, plus one that fails every time:

    python examples/nats_orders.py publish 20

Every order is handled by one of the workers, at most 10 in flight each, and acknowledged
once its handler returned. The failing one is nak'ed and redelivered 3 times (after 0.5 s,
1 s, 2 s), then published with its error to ``deadletter.ORDERS``. Read the dead letters with:

    python examples/nats_orders.py dead-letters

``kill -9`` a worker while it handles orders: after ``ack_wait`` (10 s here) another worker
gets them. Ctrl-C stops a worker after the orders it is handling are done and acknowledged.
"""

import asyncio
import json
import os
import random
import sys

from tiny_listener import Data, Event, Param
from tiny_listener.nats import DEAD_LETTER_REASON, EVENT_PATH, LAST_ERROR, NATSListener

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")

app = NATSListener(NATS_URL, stream="ORDERS", durable="billing", max_in_flight=10, max_retries=3, ack_wait=10)


@app.on_event("orders.{order_id:int}.created")
async def created(order_id: Param, customer: Data, amount: Data, event: Event) -> None:
    if customer == "mallory":
        raise ValueError(f"card of {customer} declined")
    await asyncio.sleep(random.uniform(0.05, 0.2))  # the payment provider
    print(f"order {order_id}: charged {amount} to {customer} (delivery {event.ctx.scope['attempt']})")
    # Stored by JetStream before this returns; handled by whichever worker pulls it.
    await app.publish(f"orders.{order_id}.charged", {"customer": customer, "amount": amount})


@app.on_event("orders.{order_id:int}.charged")
async def send_receipt(order_id: Param, customer: Data, amount: Data) -> None:
    print(f"order {order_id}: receipt for {amount} sent to {customer}")


@app.on_event("orders.{order_id:int}.cancelled")
async def cancelled(order_id: Param) -> None:
    print(f"order {order_id}: cancelled")


async def publish(count: int) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        for n in range(count):
            order = {"customer": f"c{n % 3}", "amount": random.randint(5, 50)}
            await js.publish(f"orders.{n}.created", json.dumps(order).encode())
        await js.publish(f"orders.{count}.created", b'{"customer": "mallory", "amount": 1}')
    finally:
        await nc.close()
    print(f"published {count + 1} orders to the ORDERS stream")


async def dead_letters() -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        subscription = await js.subscribe("deadletter.ORDERS", stream="ORDERS_dead", durable="reader")
        while True:
            try:
                message = await subscription.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                break
            print(message.headers[EVENT_PATH], message.headers[DEAD_LETTER_REASON], message.headers[LAST_ERROR])
            await message.ack()
    finally:
        await nc.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        asyncio.run(publish(int(sys.argv[2]) if len(sys.argv) > 2 else 20))
    elif sys.argv[1:2] == ["dead-letters"]:
        asyncio.run(dead_letters())
    else:
        print(__doc__)
