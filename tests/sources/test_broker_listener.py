"""BrokerListener, the base of the five broker listeners: each one is a BrokerListener whose
shared settings read and write through to ``app.source``, and whose connection state is its
source's. No broker is needed: making a listener opens no connection."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, Tuple, Type

import pytest

from tiny_listener.amqp import AMQPListener, AMQPSource
from tiny_listener.codecs import JsonCodec
from tiny_listener.kafka import KafkaListener, KafkaSource
from tiny_listener.mqtt import MQTTListener, MQTTSource
from tiny_listener.nats import NATSListener, NATSSource
from tiny_listener.redis import RedisStreamListener, RedisStreamSource
from tiny_listener.sources import BrokerSource, SourceAttribute, SourceState
from tiny_listener.sources.broker_listener import BrokerListener
from tiny_listener.testing import MemoryBroker

# Each listener class, the source class it hosts and how to make one (its required arguments).
LISTENERS: Dict[str, Tuple[Type[BrokerListener[Any, Any]], Type[BrokerSource], Callable[[], Any]]] = {
    "amqp": (AMQPListener, AMQPSource, lambda: AMQPListener(queue="orders")),
    "nats": (NATSListener, NATSSource, lambda: NATSListener(stream="ORDERS", durable="billing")),
    "redis": (RedisStreamListener, RedisStreamSource, lambda: RedisStreamListener()),
    "mqtt": (MQTTListener, MQTTSource, lambda: MQTTListener()),
    "kafka": (KafkaListener, KafkaSource, lambda: KafkaListener()),
}

# The settings every broker source has, each with a value none of the listeners defaults to.
SHARED_SETTINGS: Dict[str, Callable[[], Any]] = {
    "url": lambda: "scheme://elsewhere:1",
    "codec": JsonCodec,
    "max_in_flight": lambda: 7,
    "max_retries": lambda: 9,
    "retry_backoff": lambda: 0.25,
    "max_retry_delay": lambda: 3.5,
    "dead_letter": lambda: "elsewhere",
    "reconnect_backoff": lambda: 0.05,
    "max_reconnect_delay": lambda: 2.5,
    "quiet_client_logs": lambda: False,
}


@pytest.fixture(params=sorted(LISTENERS))
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_broker_listener_is_a_broker_listener(broker: str) -> None:
    listener_cls, source_cls, make = LISTENERS[broker]
    assert issubclass(listener_cls, BrokerListener)
    app = make()
    assert isinstance(app, BrokerListener)
    assert type(app.source) is source_cls
    assert app.health()["sources"] == {app.source.name: app.source.health()}


def test_the_shared_settings_are_declared_once_in_the_base(broker: str) -> None:
    listener_cls = LISTENERS[broker][0]
    for name in SHARED_SETTINGS:
        assert isinstance(vars(BrokerListener)[name], SourceAttribute), name
        assert isinstance(getattr(listener_cls, name), SourceAttribute), name
        assert name not in vars(listener_cls), f"{listener_cls.__name__} declares {name} again"


@pytest.mark.parametrize("name", sorted(SHARED_SETTINGS))
def test_a_shared_setting_reads_and_writes_through_to_the_source(broker: str, name: str) -> None:
    app = LISTENERS[broker][2]()
    assert getattr(app, name) is getattr(app.source, name)

    value = SHARED_SETTINGS[name]()
    setattr(app, name, value)
    assert getattr(app.source, name) is value
    assert getattr(app, name) is value
    assert name not in vars(app)  # nothing is stored on the listener itself

    other = SHARED_SETTINGS[name]()
    setattr(app.source, name, other)
    assert getattr(app, name) is other


def test_the_settings_given_to_the_constructor_reach_the_source(broker: str) -> None:
    listener_cls = LISTENERS[broker][0]
    required: Dict[str, Any] = {"amqp": {"queue": "orders"}, "nats": {"stream": "S", "durable": "d"}}.get(broker, {})
    codec = JsonCodec()
    app = listener_cls(
        codec=codec,
        max_in_flight=5,
        max_retries=1,
        retry_backoff=0.2,
        max_retry_delay=4.0,
        dead_letter=False,
        reconnect_backoff=0.3,
        max_reconnect_delay=6.0,
        shutdown_timeout=1.5,
        **required,
    )
    expected = {
        "codec": codec,
        "max_in_flight": 5,
        "max_retries": 1,
        "retry_backoff": 0.2,
        "max_retry_delay": 4.0,
        "dead_letter": False,
        "reconnect_backoff": 0.3,
        "max_reconnect_delay": 6.0,
    }
    assert {name: getattr(app.source, name) for name in expected} == expected
    assert {name: getattr(app, name) for name in expected} == expected
    assert app.shutdown_timeout == 1.5


async def test_connected_and_wait_connected_are_the_sources(broker: str) -> None:
    app = LISTENERS[broker][2]()
    if isinstance(app, MQTTListener):  # its wait_connected(count) counts connections
        app.source.connection_count = 1  # the first one, as wait_connected() waits for
    assert app.connected is False

    waiting = asyncio.ensure_future(app.wait_connected())
    await asyncio.sleep(0)
    assert not waiting.done()
    app.source.set_state(SourceState.READY)
    await asyncio.wait_for(waiting, 5)
    assert app.connected is True
    assert not isinstance(app, MQTTListener) or app.is_connected is True  # MQTT's older name
    await asyncio.wait_for(app.wait_connected(), 5)  # at once when connected

    app.source.set_state(SourceState.RECONNECTING)
    assert app.connected is False


def test_a_broker_listener_hosts_a_source_made_beforehand() -> None:
    source = MemoryBroker(max_in_flight=4)
    app: BrokerListener[Any, MemoryBroker] = BrokerListener(source, shutdown_timeout=2.0)
    assert app.source is source
    assert source.listener is app
    assert app.max_in_flight == 4
    app.max_in_flight = 6
    assert source.max_in_flight == 6
    assert app.shutdown_timeout == 2.0
