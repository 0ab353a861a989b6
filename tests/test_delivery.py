"""Delivery decisions shared by the broker listeners: payload to data, retry or dead-letter."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tiny_listener import Context, EventDataError, Listener
from tiny_listener.codecs import DecodeError, JsonCodec, RawCodec
from tiny_listener.delivery import (
    HANDLER_FAILED,
    INVALID,
    DeadLetter,
    Retry,
    after_failure,
    data_to_payload,
    is_invalid,
    payload_to_data,
    start_event,
)


def test_a_json_object_is_the_event_data() -> None:
    assert payload_to_data(b'{"a": 1}', JsonCodec()) == {"a": 1}


def test_other_values_are_carried_as_payload() -> None:
    assert payload_to_data(b"[1, 2]", JsonCodec()) == {"payload": [1, 2]}
    assert payload_to_data(b"\x00raw", RawCodec()) == {"payload": b"\x00raw"}


def test_undecodable_payload_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        payload_to_data(b"{nope", JsonCodec())


@pytest.mark.parametrize("data", [{"a": 1}, {"payload": [1]}, {"payload": {"x": 1}}, {}, [3], b"raw"])
def test_publishing_then_decoding_gives_the_data_back(data: object) -> None:
    codec = RawCodec() if isinstance(data, bytes) else JsonCodec()
    decoded = payload_to_data(data_to_payload(data, codec), codec)
    expected = data if isinstance(data, dict) else {"payload": data}
    assert decoded == expected


def test_failures_are_retried_with_growing_delays_then_dead_lettered() -> None:
    steps = [after_failure(attempt, 3, 0.5, 30.0) for attempt in (1, 2, 3, 4)]
    assert steps == [Retry(2, 0.5), Retry(3, 1.0), Retry(4, 2.0), DeadLetter(HANDLER_FAILED)]


def test_retry_delays_are_capped() -> None:
    assert after_failure(10, 20, 0.5, 3.0) == Retry(11, 3.0)


def test_no_retries_dead_letters_at_once() -> None:
    assert after_failure(1, 0, 0.5, 30.0) == DeadLetter(HANDLER_FAILED)


@dataclasses.dataclass
class Order:
    sku: str
    qty: int


class App(Listener[Context]):
    async def listen(self) -> None:
        await self.wait_for_shutdown()


async def test_data_that_does_not_validate_is_dead_lettered_at_once_as_invalid() -> None:
    app = App()

    @app.on_event("order")
    async def order(order: Order) -> None:
        raise EventDataError("a handler's own data error is a failure like any other")

    task = start_event(app, "order", b'{"sku": 1}', JsonCodec(), {})
    assert isinstance(task, asyncio.Task)
    error = (await asyncio.gather(task, return_exceptions=True))[0]
    assert is_invalid(error)
    assert after_failure(1, 5, 0.5, 30.0, error) == DeadLetter(INVALID)
    [field, missing] = error.errors()
    assert (field["loc"], missing["loc"]) == (("sku",), ("qty",))
    # Valid data whose handler fails is retried as before.
    task = start_event(app, "order", b'{"sku": "a", "qty": 1}', JsonCodec(), {})
    assert isinstance(task, asyncio.Task)
    other = (await asyncio.gather(task, return_exceptions=True))[0]
    assert isinstance(other, EventDataError) and not is_invalid(other)
    assert after_failure(1, 5, 0.5, 30.0, other) == Retry(2, 0.5)


def test_the_decision_carries_the_error_it_was_made_for() -> None:
    error = ValueError("boom")
    retry, dead = after_failure(1, 1, 0.5, 30.0, error), after_failure(2, 1, 0.5, 30.0, error)
    assert isinstance(retry, Retry) and retry.error is error
    assert isinstance(dead, DeadLetter) and dead.error is error
