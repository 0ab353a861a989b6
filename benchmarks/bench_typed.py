"""Typed event data: what validating costs per event, in-process.

Each case is ``trigger_event`` + its handler, awaited, 2,000 events a round, 30 rounds of
every case interleaved. The handlers take the same three values (``sku``, ``qty``, ``price``):

- ``data_fields``: ``sku: Data, qty: Data, price: Data``, unchecked, as in 1.2;
- ``annotated``: ``Annotated[str, Data]``... checked by the built-in checker;
- ``dataclass``: one dataclass parameter (the built-in checker);
- ``pydantic``: one pydantic v2 model parameter;
- ``msgspec``: one msgspec ``Struct`` parameter;
- ``validate_in_handler``: ``event: Event``, the handler calling ``Order.model_validate`` on
  ``event.data`` itself: an untyped event plus the validation, measured as one, a cross-check
  of the subtraction below;

and, as the price of validation itself, ``Order.model_validate(data)`` and
``msgspec.convert(data, OrderStruct)`` called in a plain loop.

Goal: a pydantic-typed event costs at most the validation itself plus 2 µs over an untyped one,
that is ``pydantic - data_fields - model_validate <= 2 µs``, taken within each round (the
three cases run back to back, under the same load) and the median over rounds: on a shared
machine the load drifts over a run, and figures taken in the same round drift together. The
same from each case's best round is printed too (``_best``).

The generated invokers alone (what a handler's plan does before calling it, without dispatch)
are timed too, untyped and with the pydantic model: ``plan_overhead_beyond_validation_us`` is
the pydantic one minus the untyped one minus the model's own validator, the part of the goal
that is tiny-listener's code and nothing else.

With FastStream installed (``pip install -e '.[bench]'``), its pydantic handler is run through
``TestRedisBroker``, its in-memory test broker (``publish`` JSON-encodes the message, then it is
decoded, validated and handled), against tiny-listener doing that same work in-process: JSON
bytes to event data (``payload_to_data``), ``trigger_event``, the pydantic handler.

    python benchmarks/bench_typed.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from typing import Annotated, Any, Awaitable, Callable, Dict, List

import msgspec
from _harness import eprint, interleaved_async, median_ratio, now, report, rounds_from_env
from pydantic import BaseModel

from tiny_listener import Context, Data, Event, Listener
from tiny_listener.codecs import JsonCodec
from tiny_listener.delivery import payload_to_data

BATCH = 2_000
FASTSTREAM_BATCH = 200
DATA = {"sku": "pen-01", "qty": 3, "price": 1.25}


class Order(BaseModel):
    sku: str
    qty: int
    price: float


class OrderStruct(msgspec.Struct):
    sku: str
    qty: int
    price: float


@dataclasses.dataclass
class OrderData:
    sku: str
    qty: int
    price: float


class App(Listener[Context]):
    async def listen(self) -> None:  # pragma: no cover - never run
        pass


def make_app() -> App:
    app = App()

    @app.on_event("fields")
    async def data_fields(sku: Data, qty: Data, price: Data) -> Any:
        return qty

    @app.on_event("annotated")
    async def annotated(sku: Annotated[str, Data], qty: Annotated[int, Data], price: Annotated[float, Data]) -> Any:
        return qty

    @app.on_event("dataclass")
    async def with_dataclass(order: OrderData) -> Any:
        return order.qty

    @app.on_event("pydantic")
    async def with_pydantic(order: Order) -> Any:
        return order.qty

    @app.on_event("msgspec")
    async def with_msgspec(order: OrderStruct) -> Any:
        return order.qty

    @app.on_event("manual")
    async def validate_in_handler(event: Event) -> Any:  # type: ignore[type-arg]
        return Order.model_validate(event.data).qty

    return app


def event_case(app: App, path: str) -> Callable[[], Awaitable[float]]:
    async def case() -> float:
        trigger = app.trigger_event
        data = DATA
        start = now()
        for _ in range(BATCH):
            await trigger(path, data=data)
        return (now() - start) / BATCH

    return case


def loop_case(validate: Callable[[Any], Any]) -> Callable[[], Awaitable[float]]:
    async def case() -> float:
        data = DATA
        start = now()
        for _ in range(BATCH):
            validate(data)
        return (now() - start) / BATCH

    return case


class _BareEvent:
    """What an invoker reads of an event: ``data`` (and ``ctx``, only when data is empty)."""

    __slots__ = ("ctx", "data")

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data
        self.ctx = None


def invoker_case(app: App, name: str) -> Callable[[], Awaitable[float]]:
    """The handler's generated invoker called directly; the handler's coroutine is closed."""
    invoke = app.routes[name].hook._invoke  # the plan itself, as dispatch calls it
    event: Any = _BareEvent(dict(DATA))
    params: Dict[str, Any] = {}

    async def case() -> float:
        start = now()
        for _ in range(BATCH):
            invoke(event, params).close()
        return (now() - start) / BATCH

    return case


def json_case(app: App) -> Callable[[], Awaitable[float]]:
    """tiny-listener doing what FastStream's test broker does: bytes in, decoded, validated."""
    codec = JsonCodec()

    async def case() -> float:
        start = now()
        for _ in range(FASTSTREAM_BATCH):
            payload = codec.encode(DATA)
            await app.trigger_event("pydantic", data=payload_to_data(payload, codec))
        return (now() - start) / FASTSTREAM_BATCH

    return case


def overhead(samples: Dict[str, List[float]], case: str, minus: List[str]) -> Dict[str, float]:
    """``case`` minus the ``minus`` cases, in µs: the median over rounds of the difference
    taken within each round, and the difference of each case's best round."""
    best = min(samples[case]) - sum(min(samples[other]) for other in minus)
    median = statistics.median(
        samples[case][i] - sum(samples[other][i] for other in minus) for i in range(len(samples[case]))
    )
    return {"best": 1e6 * best, "median": 1e6 * median}


async def faststream_cases() -> Any:
    """FastStream's pydantic handler behind TestRedisBroker, or None if it is not installed."""
    try:
        from faststream.redis import RedisBroker, TestRedisBroker
    except ImportError:
        eprint("faststream is not installed (pip install -e '.[bench]'): its case is skipped")
        return None
    broker = RedisBroker()
    handled: List[int] = []

    @broker.subscriber("orders")
    async def handle(order: Order) -> None:
        handled.append(order.qty)

    test_broker = TestRedisBroker(broker)
    client = await test_broker.__aenter__()

    async def case() -> float:
        start = now()
        for _ in range(FASTSTREAM_BATCH):
            await client.publish(DATA, "orders")
        return (now() - start) / FASTSTREAM_BATCH

    async def close() -> None:
        await test_broker.__aexit__(None, None, None)
        assert len(handled) >= FASTSTREAM_BATCH, "FastStream's handler did not run"

    return case, close


async def run() -> Dict[str, Any]:
    app = make_app()
    rounds = rounds_from_env(30)
    cases: Dict[str, Callable[[], Awaitable[float]]] = {
        "data_fields": event_case(app, "fields"),
        "annotated": event_case(app, "annotated"),
        "dataclass": event_case(app, "dataclass"),
        "pydantic": event_case(app, "pydantic"),
        "msgspec": event_case(app, "msgspec"),
        "validate_in_handler": event_case(app, "manual"),
        "model_validate": loop_case(Order.model_validate),
        "invoke_data_fields": invoker_case(app, "data_fields"),
        "invoke_pydantic": invoker_case(app, "with_pydantic"),
        # What the pydantic plan calls: the model's validator, without model_validate's frame.
        "model_validator": loop_case(Order.__pydantic_validator__.validate_python),
        "msgspec_convert": loop_case(lambda data: msgspec.convert(data, OrderStruct)),
    }
    samples = await interleaved_async(cases, rounds)
    best = {name: 1e6 * min(values) for name, values in samples.items()}
    figures: Dict[str, Any] = {f"{name}_us_per_event": value for name, value in best.items()}
    for case, validation in (("pydantic", "model_validate"), ("msgspec", "msgspec_convert")):
        extra = overhead(samples, case, ["data_fields", validation])
        figures[f"{case}_overhead_beyond_validation_us"] = extra["median"]
        figures[f"{case}_overhead_beyond_validation_us_best"] = extra["best"]
    figures["goal_overhead_at_most_us"] = 2.0
    plan = overhead(samples, "invoke_pydantic", ["invoke_data_fields", "model_validator"])
    figures["plan_overhead_beyond_validation_us"] = plan["median"]
    figures["pydantic_minus_validate_in_handler_us"] = overhead(samples, "pydantic", ["validate_in_handler"])["median"]
    figures["pydantic_vs_data_fields"] = median_ratio(samples, "pydantic", "data_fields")
    figures["dataclass_vs_data_fields"] = median_ratio(samples, "dataclass", "data_fields")
    figures["annotated_vs_data_fields"] = median_ratio(samples, "annotated", "data_fields")

    faststream = await faststream_cases()
    if faststream is not None:
        fs_case, close = faststream
        try:
            versus = await interleaved_async(
                {"tiny_listener_json": json_case(app), "faststream_test_broker": fs_case}, max(3, rounds // 3)
            )
        finally:
            await close()
        figures["tiny_listener_json_us_per_event"] = 1e6 * statistics.median(versus["tiny_listener_json"])
        figures["faststream_test_broker_us_per_event"] = 1e6 * statistics.median(versus["faststream_test_broker"])
        figures["events_per_s_vs_faststream_test_broker"] = median_ratio(
            versus, "faststream_test_broker", "tiny_listener_json"
        )
    figures["contexts_left"] = len(app.ctxs)
    return figures


def main() -> None:
    report("typed-data", asyncio.run(run()))


if __name__ == "__main__":
    main()
