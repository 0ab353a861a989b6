"""Billing workers sharing one Redis stream: start as many as you like, on any machine.

Needs Redis on 127.0.0.1:6379 (or set REDIS_URL) and ``pip install 'tiny-listener[redis]'``.
Start two workers, in two terminals:

    tiny-listener --app-dir examples redis_workers:app

then publish 20 orders (and one the workers have no route for, which is dead-lettered):

    python examples/redis_workers.py publish 20

Each order is billed by one of the workers, at least once. Kill a worker with ``kill -9``
while it bills: after ``claim_idle`` seconds (5 here) the other one bills what it left.
Orders for one customer are billed one at a time, in order (``order_by="customer"``); billing
is idempotent (a Redis ``SET NX`` per order), so a redelivered order is not billed twice.

See what was dead-lettered, and replay it once the cause is fixed:

    python examples/redis_workers.py dead-letters
    python examples/redis_workers.py replay
"""

import asyncio
import os
import random
import sys

from tiny_listener import Data, Event, Param
from tiny_listener.redis import RedisPublisher, RedisStreamListener, read_dead_letters, replay_dead_letters

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = RedisStreamListener(
    REDIS_URL,
    streams=["orders"],
    group="billing",
    max_in_flight=50,
    max_retries=3,
    claim_idle=5.0,
    order_by="customer",
)


@app.on_event("order:{order_id:int}:created")
async def bill(order_id: Param, customer: Data, amount: Data, event: Event) -> None:
    # At-least-once: the same order may come twice (a worker died after billing, before the
    # acknowledgement). Remember what was billed, for a day, and skip repeats.
    first_time = await app.redis.set(f"billed:{order_id}", app.consumer, nx=True, ex=86400)
    if not first_time:
        print(f"order {order_id}: already billed, skipped")
        return
    await asyncio.sleep(random.uniform(0.05, 0.3))  # the payment provider
    print(f"order {order_id}: billed {amount} to {customer} "
          f"(attempt {event.ctx.scope['attempt']}, by {app.consumer})")


async def publish(count: int) -> None:
    async with RedisPublisher(REDIS_URL) as publisher:
        await publisher.publish_many("orders", [
            (f"order:{n}:created", {"customer": f"c{n % 3}", "amount": random.randint(5, 50)})
            for n in range(1, count + 1)
        ])
        await publisher.publish("orders", "order:refunded", {"order_id": 1})  # no route: dead-lettered
    print(f"published {count} orders to 'orders'")


async def show_dead_letters() -> None:
    for letter in await read_dead_letters("orders:dead", url=REDIS_URL):
        print(f"{letter.id.decode()}  {letter.path!r}  {letter.reason}: {letter.error}")


async def replay() -> None:
    count = await replay_dead_letters("orders:dead", url=REDIS_URL)
    print(f"replayed {count} dead letter(s) to their streams")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "publish"
    if command == "publish":
        asyncio.run(publish(int(sys.argv[2]) if len(sys.argv) > 2 else 20))
    elif command == "dead-letters":
        asyncio.run(show_dead_letters())
    elif command == "replay":
        asyncio.run(replay())
    else:
        sys.exit(f"usage: {sys.argv[0]} [publish [N] | dead-letters | replay]")
