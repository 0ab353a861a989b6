"""Results that become messages and replies, through the one broker delivery flow (on the
in-memory broker; NATS and RabbitMQ are tested against the brokers in tests/nats and tests/amqp)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Dict, List, Tuple

import pytest
from pydantic import BaseModel

from tiny_listener import Event, Listener, NoReply, Param, RouteError
from tiny_listener.testing import MemoryBroker, Outcome


class Invoice(BaseModel):
    order: int
    total: float


def make_app(**settings: Any) -> Tuple[Listener[Any], MemoryBroker]:
    app: Listener[Any] = Listener()
    return app, app.add_source(MemoryBroker(**settings))


async def test_a_result_is_published_to_the_destination_built_from_the_path_parameters() -> None:
    app, broker = make_app()
    invoices: List[Dict[str, Any]] = []

    @app.on_event("orders.{id:int}", publish_to="invoices.{id}")
    async def bill(id: Param) -> Invoice:
        return Invoice(order=id, total=9.5)

    @app.on_event("invoices.{id}")
    async def record(event: Event) -> None:
        invoices.append(event.data)

    async with broker:
        order = await broker.publish("orders.7", {})
        await order.settled()
        deliveries = await broker.settled()
    assert order.outcome is Outcome.ACKED
    assert [delivery.path for delivery in deliveries] == ["orders.7", "invoices.7"]
    assert json.loads(deliveries[1].payload) == {"order": 7, "total": 9.5}
    assert invoices == [{"order": 7, "total": 9.5}]


async def test_the_result_is_published_before_the_message_is_acknowledged() -> None:
    outcomes_at_publication: List[Any] = []

    class WatchedBroker(MemoryBroker):
        async def publish(self, path: str, data: Any = None, **options: Any) -> Any:
            if path.startswith("invoices."):
                outcomes_at_publication.append(self.deliveries[0].outcome)
            return await super().publish(path, data, **options)

    app: Listener[Any] = Listener()
    broker = app.add_source(WatchedBroker())

    @app.on_event("orders.{id}", publish_to="invoices.{id}")
    async def bill(id: Param) -> Dict[str, str]:
        return {"order": id}

    @app.on_event("invoices.{id}")
    async def record() -> None:
        pass

    async with broker:
        order = await broker.publish("orders.a", {})
        await broker.settled()
    assert outcomes_at_publication == [None]
    assert order.outcome is Outcome.ACKED


async def test_a_handler_returning_none_publishes_nothing() -> None:
    app, broker = make_app()

    @app.on_event("orders.{id}", publish_to="invoices.{id}")
    async def maybe_bill(event: Event) -> Any:
        return event.data.get("bill")

    @app.on_event("invoices.{id}")
    async def record() -> None:
        pass

    async with broker:
        await broker.publish("orders.1", {})
        await broker.publish("orders.2", {"bill": [1, 2]})
        deliveries = await broker.settled()
    assert [(d.path, d.payload) for d in deliveries] == [("orders.1", b"{}"), ("orders.2", b'{"bill":[1,2]}'),
                                                          ("invoices.2", b"[1,2]")]


async def test_a_failed_publication_fails_the_delivery_which_is_retried_then_dead_lettered() -> None:
    app, broker = make_app(max_retries=1)
    runs: List[int] = []

    @app.on_event("orders.{id}", publish_to="invoices.{id}")
    async def bill(id: Param) -> Dict[str, Any]:
        runs.append(1)
        return {"order": id, "when": object()}  # the codec cannot encode it

    async with broker:
        order = await broker.publish("orders.3", {})
        await order.settled()
    assert len(runs) == 2
    assert order.outcome is Outcome.DEAD_LETTERED
    assert order.reason == "handler-failed"
    assert isinstance(order.error, TypeError)
    assert [delivery.path for delivery in broker.deliveries] == ["orders.3"]


def test_a_destination_naming_a_missing_parameter_is_an_error_at_registration() -> None:
    app: Listener[Any] = Listener()
    missing = r"uses \{customer\}, which is not a path parameter of the route \(it has: id\)"
    with pytest.raises(RouteError, match=missing):

        @app.on_event("orders.{id}", publish_to="invoices.{customer}")
        async def bill() -> None:
            pass

    with pytest.raises(RouteError, match="unmatched brace"):

        @app.on_event("orders.{id}", publish_to="invoices.{id")
        async def bill_too() -> None:
            pass

    with pytest.raises(RouteError, match="must be a non-empty string"):

        @app.on_event("orders.{id}", publish_to="")
        async def bill_again() -> None:
            pass

    assert list(app.routes) == []


async def test_a_request_gets_its_handlers_result_as_the_reply() -> None:
    app, broker = make_app()

    @dataclasses.dataclass
    class Quote:
        sku: str
        price: int

    @app.on_event("quotes.{sku}")
    async def quote(sku: Param) -> Quote:
        return Quote(sku, 12)

    async with broker:
        assert await app.request("quotes.pen", {}) == {"sku": "pen", "price": 12}
        assert await broker.request("quotes.ink", {}) == {"sku": "ink", "price": 12}


async def test_a_request_nobody_answers_raises_no_reply_after_the_timeout() -> None:
    app, broker = make_app(max_retries=0, dead_letter=False)

    @app.on_event("quotes.{sku}")
    async def quote() -> None:
        raise RuntimeError("no price list")

    async with broker:
        with pytest.raises(NoReply, match=r"no reply to request 'quotes.pen' within 0.2 s"):
            await app.request("quotes.pen", {}, timeout=0.2)
        await broker.settled()


async def test_a_listener_without_request_reply_says_so() -> None:
    app: Listener[Any] = Listener()
    with pytest.raises(Exception, match="hosts no source with request/reply"):
        await asyncio.wait_for(app.request("x"), 1)


async def test_a_request_whose_data_does_not_validate_is_dead_lettered_at_once_without_reply() -> None:
    app, broker = make_app(max_retries=3)

    @app.on_event("invoices.{id}")
    async def total(invoice: Invoice) -> float:
        return invoice.total

    async with broker:
        assert await app.request("invoices.1", {"order": 1, "total": 2.5}) == 2.5
        with pytest.raises(NoReply):
            await app.request("invoices.2", {"order": "x"}, timeout=0.3)
        await broker.settled()
    bad = broker.deliveries[1]
    assert (bad.outcome, bad.reason, bad.attempts, bad.replies) == (Outcome.DEAD_LETTERED, "invalid", 1, [])
    assert broker.deliveries[0].replies == [b"2.5"]
