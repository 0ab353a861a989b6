"""Results that become messages and request/reply, against the nats-server on 127.0.0.1:4222."""

from __future__ import annotations

import asyncio
import json
from typing import Any, List

import pytest
from pydantic import BaseModel

from tests.broker_listeners import running
from tiny_listener import NoReply, Param
from tiny_listener.nats import DEAD_LETTER_REASON, LAST_ERROR

from .conftest import Streams, pending


class Invoice(BaseModel):
    order: int
    total: float


async def other_stream(client: Any, streams: Streams, subject: str) -> str:
    """Create a stream (deleted after the test) taking ``subject``; return its name."""
    name = f"{streams.prefix}_other"
    await client.jetstream().add_stream(name=name, subjects=[subject])
    streams.streams.append(name)
    return name


async def test_a_result_is_stored_in_the_stream_of_its_destination_before_the_ack(
    streams: Streams, client: Any
) -> None:
    p = streams.prefix
    invoices = await other_stream(client, streams, f"{p}.invoices.*")
    app = streams.app()

    @app.on_event(p + ".orders.{id:int}", publish_to=p + ".invoices.{id}")
    async def bill(id: Param) -> Invoice:
        return Invoice(order=id, total=12.5)

    subscription = await client.jetstream().subscribe(f"{p}.invoices.*", stream=invoices)
    async with running(app):
        await app.publish(f"{p}.orders.7", {})
        invoice = await subscription.next_msg(timeout=10)
    await subscription.unsubscribe()
    assert invoice.subject == f"{p}.invoices.7"
    assert json.loads(invoice.data) == {"order": 7, "total": 12.5}
    assert await pending(client, app.stream, app.durable) == 0


async def test_a_destination_no_stream_takes_fails_the_message_which_is_dead_lettered(
    streams: Streams, client: Any
) -> None:
    p = streams.prefix
    app = streams.app(max_retries=0)

    @app.on_event(p + ".orders.{id}", publish_to=p + ".nowhere.{id}")
    async def bill(id: Param) -> Any:
        return {"order": id}

    async with running(app):
        dead = await client.jetstream().subscribe(app.dead_letter_subject, stream=f"{app.stream}_dead")
        await app.publish(f"{p}.orders.8", {})
        letter = await dead.next_msg(timeout=10)
    await dead.unsubscribe()
    assert letter.headers[DEAD_LETTER_REASON] == "handler-failed"
    assert "NoStreamResponse" in letter.headers[LAST_ERROR] or "NoResponders" in letter.headers[LAST_ERROR]


async def test_a_request_to_a_stream_subject_gets_the_handlers_result(streams: Streams) -> None:
    p = streams.prefix
    app = streams.app()
    handled: List[str] = []

    @app.on_event(p + ".quotes.{sku}")
    async def quote(sku: Param) -> Any:
        handled.append(sku)
        return {"sku": sku, "price": 3}

    async with running(app):
        replies = await asyncio.gather(*(app.request(f"{p}.quotes.{sku}", {}, timeout=10) for sku in ("a", "b")))
        # The same through another process's point of view: a listener that only sends.
        requester = streams.app(stream=f"{p}_requester", subjects=[f"{p}.unused"])
        async with running(requester):
            assert await requester.request(f"{p}.quotes.c", {}, timeout=10) == {"sku": "c", "price": 3}
    assert replies == [{"sku": "a", "price": 3}, {"sku": "b", "price": 3}]
    assert sorted(handled) == ["a", "b", "c"]


async def test_a_request_to_a_core_nats_responder(streams: Streams, client: Any) -> None:
    p = streams.prefix
    app = streams.app()

    @app.on_event(p + ".orders.{id}")
    async def order() -> None:
        pass

    async def respond(message: Any) -> None:
        await message.respond(json.dumps({"echo": json.loads(message.data)}).encode())

    responder = await client.subscribe(f"{p}.echo", cb=respond)
    async with running(app):
        assert await app.request(f"{p}.echo", {"n": 1}, timeout=10) == {"echo": {"n": 1}}
    await responder.unsubscribe()


async def test_no_reply_when_nobody_takes_the_subject_or_answers(streams: Streams, client: Any) -> None:
    p = streams.prefix
    await other_stream(client, streams, f"{p}.stored.*")  # stored, but nobody consumes it
    app = streams.app()

    @app.on_event(p + ".orders.{id}")
    async def order() -> None:
        pass

    async with running(app):
        with pytest.raises(NoReply, match="no stream takes the subject and nobody subscribes to it"):
            await app.request(f"{p}.nobody", {}, timeout=5)
        with pytest.raises(NoReply, match=rf"no reply to request '{p}.stored.1' within 0.3 s"):
            await app.request(f"{p}.stored.1", {}, timeout=0.3)
