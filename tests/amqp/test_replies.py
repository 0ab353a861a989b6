"""Results that become messages and request/reply (reply-to + correlation id), against the
RabbitMQ broker on 127.0.0.1:5672."""

from __future__ import annotations

import asyncio
import json
from typing import Any, List

import pytest
from pydantic import BaseModel

from tests.broker_listeners import running
from tiny_listener import NoReply, Param
from tiny_listener.amqp import DEAD_LETTER_REASON, LAST_ERROR

from .conftest import Names, aio_pika, get_all, message_count


class Invoice(BaseModel):
    order: int
    total: float


async def bound_queue(channel: Any, names: Names, exchange: str, key: str, suffix: str) -> Any:
    """Declare a queue (deleted after the test) bound to ``exchange`` with ``key``."""
    queue = await channel.declare_queue(names.queue(suffix))
    await queue.bind(exchange, routing_key=key)
    return queue


async def test_a_result_is_published_to_its_destination_before_the_ack(names: Names, channel: Any) -> None:
    exchange = names.exchange()
    app = names.app(exchange=exchange)

    @app.on_event("orders.{id:int}", publish_to="invoices.{id}")
    async def bill(id: Param) -> Invoice:
        return Invoice(order=id, total=12.5)

    async with running(app):
        invoices = await bound_queue(channel, names, exchange, "invoices.*", "invoices")
        await app.publish("orders.7", {})
        [invoice] = await get_all(channel, invoices.name, 1)
    assert invoice.routing_key == "invoices.7"
    assert json.loads(invoice.body) == {"order": 7, "total": 12.5}
    assert await message_count(channel, app.queue) == 0


async def test_an_unroutable_destination_fails_the_message_which_is_dead_lettered(
    names: Names, channel: Any
) -> None:
    app = names.app(exchange=names.exchange(), max_retries=0)

    @app.on_event("orders.{id}", publish_to="nowhere.{id}")
    async def bill(id: Param) -> Any:
        return {"order": id}

    async with running(app):
        await app.publish("orders.8", {})
        [letter] = await get_all(channel, f"{app.queue}.dead", 1)
    assert letter.headers[DEAD_LETTER_REASON] == "handler-failed"
    assert "NO_ROUTE" in letter.headers[LAST_ERROR]


async def test_a_request_gets_the_handlers_result_with_its_correlation_id(names: Names, channel: Any) -> None:
    app = names.app()
    handled: List[str] = []

    @app.on_event("quotes.{sku}")
    async def quote(sku: Param) -> Any:
        handled.append(sku)
        return {"sku": sku, "price": 3}

    async with running(app):
        replies = await asyncio.gather(*(app.request(f"quotes.{sku}", {}, timeout=10) for sku in ("a", "b")))
        # A plain client asking: its own reply queue, its own correlation id.
        callback = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", headers={"x-event-path": "quotes.c"}, reply_to=callback.name, correlation_id="c-1"),
            routing_key=app.queue,
        )
        async with callback.iterator() as answers:
            async for answer in answers:
                await answer.ack()
                break
    assert replies == [{"sku": "a", "price": 3}, {"sku": "b", "price": 3}]
    assert answer.correlation_id == "c-1"
    assert json.loads(answer.body) == {"sku": "c", "price": 3}
    assert sorted(handled) == ["a", "b", "c"]
    assert await message_count(channel, app.queue) == 0


async def test_a_request_to_a_plain_responder_and_no_reply(names: Names, channel: Any) -> None:
    exchange = names.exchange()
    app = names.app(exchange=exchange)

    @app.on_event("orders.{id}")
    async def order() -> None:
        pass

    async def respond(message: Any) -> None:
        async with message.process():
            answer = json.dumps({"echo": json.loads(message.body)}).encode()
            await channel.default_exchange.publish(
                aio_pika.Message(answer, correlation_id=message.correlation_id), routing_key=message.reply_to
            )

    async with running(app):
        echo = await bound_queue(channel, names, exchange, "echo", "echo")
        await echo.consume(respond)
        await bound_queue(channel, names, exchange, "stored", "stored")  # nobody consumes it
        assert await app.request("echo", {"n": 1}, timeout=10) == {"echo": {"n": 1}}
        with pytest.raises(NoReply, match="no queue takes routing key 'nowhere'"):
            await app.request("nowhere", {}, timeout=5)
        with pytest.raises(NoReply, match=r"no reply to request 'stored' within 0.3 s"):
            await app.request("stored", {}, timeout=0.3)
