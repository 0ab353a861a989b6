"""AMQPListener as a listener hosting one AMQPSource: URLs checked when it is made, and the
settings it shares with its source."""

from __future__ import annotations

from typing import Any

import pytest

from tiny_listener.amqp import AMQPListener, AMQPSource


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://guest:guest@127.0.0.1:5672/", "has scheme 'http'"),
        ("amqp://guest:guest@127.0.0.1:56x2/", "malformed RabbitMQ URL"),
        ("amqp:///vhost", "names no host"),
    ],
)
def test_a_url_that_is_not_an_amqp_url_is_refused_when_the_listener_is_made(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=r"expected amqp://\[user:password@\]host") as raised:
        AMQPListener(url, queue="orders")
    assert complaint in str(raised.value)
    assert "guest:guest" not in str(raised.value)  # the password is not shown


def test_the_listener_hosts_one_source_and_shares_its_settings() -> None:
    app: AMQPListener[Any] = AMQPListener(queue="orders", max_in_flight=4)
    assert app.sources == (app.source,) and isinstance(app.source, AMQPSource)
    assert (app.max_in_flight, app.dead_letter_queue) == (4, "orders.dead")
    app.dead_letter = "failed"
    assert app.source.dead_letter_target == app.dead_letter_queue == "failed"
    assert AMQPListener(queue="orders", dead_letter=False).dead_letter_queue is None
    assert app.health()["sources"] == {
        "amqp": {"kind": "amqp", "state": "stopped", "url": "amqp://guest:***@127.0.0.1:5672/", "in_flight": 0}
    }
