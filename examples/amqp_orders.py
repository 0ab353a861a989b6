"""Order workers on RabbitMQ: a topic exchange, a shared queue, retries and dead letters.

Needs RabbitMQ on 127.0.0.1:5672 (guest/guest, or set AMQP_URL) and
``pip install 'tiny-listener[amqp]'``. Start one or more workers, in separate terminals:

    tiny-listener --app-dir examples amqp_orders:app

then publish 20 orders from any AMQP client (here aio-pika), plus one order that fails
every time and one event that no route handles:

    python examples/amqp_orders.py publish 20

The routing key is the event path: the ``shop`` topic exchange delivers ``order.*.created`` and
``order.*.cancelled`` and ``order.*.charged`` to the ``orders`` queue, as the routes say. Orders are shared by the
workers, at most 10 in flight each; each is acknowledged once its handler returned. The
failing order is retried 3 times (after 0.5 s, 1 s, 2 s), then moved with its error to the
``orders.dead`` queue, as is the event nobody handles. Read the dead letters with:

    python examples/amqp_orders.py dead-letters

Ctrl-C stops a worker after the orders it is handling are done and acknowledged.
"""

import asyncio
import os
import random
import sys

from tiny_listener import Data, Event, Param
from tiny_listener.amqp import DEAD_LETTER_REASON, LAST_ERROR, AMQPListener

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

app = AMQPListener(AMQP_URL, queue="orders", exchange="shop", max_in_flight=10, max_retries=3)


@app.on_event("order.{order_id:int}.created")
async def created(order_id: Param, customer: Data, amount: Data, event: Event) -> None:
    if customer == "mallory":
        raise ValueError(f"card of {customer} declined")
    await asyncio.sleep(random.uniform(0.05, 0.2))  # the payment provider
    print(f"order {order_id}: charged {amount} to {customer} (attempt {event.ctx.scope['attempt']})")
    # Handlers publish through the listener: confirmed by RabbitMQ before this returns, and
    # routed back to this queue by the binding of the route below.
    await app.publish(f"order.{order_id}.charged", {"customer": customer, "amount": amount})


@app.on_event("order.{order_id:int}.charged")
async def send_receipt(order_id: Param, customer: Data, amount: Data) -> None:
    print(f"order {order_id}: receipt for {amount} sent to {customer}")


@app.on_event("order.{order_id:int}.cancelled")
async def cancelled(order_id: Param) -> None:
    print(f"order {order_id}: cancelled")


async def publish(count: int) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("shop", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("orders", durable=True)
        await queue.bind(exchange, "order.*.created")  # so that nothing is lost before a worker starts
        await queue.bind(exchange, "order.*.cancelled")
        await queue.bind(exchange, "order.*.refunded")  # bound, but no worker handles it
        for n in range(count):
            body = f'{{"customer": "c{n % 3}", "amount": {random.randint(5, 50)}}}'.encode()
            await exchange.publish(aio_pika.Message(body, content_type="application/json"), f"order.{n}.created")
        await exchange.publish(aio_pika.Message(b'{"customer": "mallory", "amount": 1}'), f"order.{count}.created")
        await exchange.publish(aio_pika.Message(b"{}"), "order.1.refunded")
    print(f"published {count + 2} messages to the 'shop' exchange")


async def dead_letters() -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("orders.dead", durable=True)
        while (message := await queue.get(fail=False)) is not None:
            print(message.headers.get("x-event-path"), message.headers[DEAD_LETTER_REASON], message.headers[LAST_ERROR])
            await message.ack()


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        asyncio.run(publish(int(sys.argv[2]) if len(sys.argv) > 2 else 20))
    elif sys.argv[1:2] == ["dead-letters"]:
        asyncio.run(dead_letters())
    else:
        print(__doc__)
