"""The RabbitMQ objects an :class:`~tiny_listener.amqp.AMQPListener` uses, by name.

Kept free of network code: the listener declares what this module describes.

- the work queue (declared, or an existing one), optionally bound to a topic exchange with one
  binding key per route (``order.{id}.created`` -> ``order.*.created``);
- one retry queue per retry delay, ``<queue>.retry.<ms>ms``: a message waits there for its
  per-queue TTL, then RabbitMQ dead-letters it back to the work queue (one queue per delay,
  because RabbitMQ only expires messages at the head of a queue);
- the dead-letter queue, ``<queue>.dead`` unless named otherwise.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from ..backoff import retry_delay
from ..routing import Route
from ..wildcards import message_routes, route_pattern, unique_patterns

BINDING_KEY_OPT = "binding_key"
"""``@app.on_event(path, binding_key="...")`` overrides the binding key derived from ``path``."""


def binding_key(route: Route) -> str:
    """Return the topic-exchange binding key of ``route``: its ``binding_key`` option if given,
    else its path with ``*`` for a segment holding a parameter and ``#`` for a ``path`` one."""
    override = route.opts.get(BINDING_KEY_OPT)
    if override is not None:
        return str(override)
    return route_pattern(route.path, separator=".", single="*", multi="#", multi_ends_pattern=False)


def binding_keys(routes: Mapping[str, Route]) -> List[str]:
    """Return the binding keys of ``routes`` (HTTP routes aside, see
    :func:`~tiny_listener.wildcards.message_routes`), without repeats, in registration order."""
    return unique_patterns(binding_key(route) for route in message_routes(routes.values()))


def retry_delays_ms(max_retries: int, retry_backoff: float, max_retry_delay: float) -> List[int]:
    """Return the delay in milliseconds before each retry, retry 1 first."""
    return [
        round(retry_delay(attempt, initial=retry_backoff, maximum=max_retry_delay) * 1000)
        for attempt in range(1, max_retries + 1)
    ]


def retry_queue_name(queue: str, delay_ms: int) -> str:
    """Return the name of the queue where messages of ``queue`` wait ``delay_ms`` before retry."""
    return f"{queue}.retry.{delay_ms}ms"


def retry_queue_arguments(queue: str, delay_ms: int) -> Dict[str, Any]:
    """Return the arguments of a retry queue: expire after ``delay_ms``, then go back to
    ``queue`` through the default exchange."""
    return {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }


def dead_letter_queue_name(queue: str) -> str:
    """Return the default dead-letter queue name of ``queue``."""
    return f"{queue}.dead"
