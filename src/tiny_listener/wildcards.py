"""Broker wildcard patterns derived from route paths.

A broker can only filter messages by its own wildcard syntax: AMQP topic keys
(``order.*.created``, ``#``), NATS subjects (``orders.*``, ``>``), MQTT topic filters
(``/iot/+/temp``, ``#``). This module turns a route path into such a pattern, without any
network code, so that a listener subscribes to what its routes can match.

Each segment between separators becomes: itself if it is literal text, the single-segment
wildcard if it holds a parameter, and the multi-segment wildcard if it holds a ``path``
parameter (which may span separators). A pattern may let through more than the route matches
(``{id:int}`` becomes ``*``, which also matches ``abc``); the listener's routing decides then.

HTTP routes (``GET:/users/{id}``) belong to an HTTP source hosted beside the broker: a broker
subscribes for :func:`message_routes` only.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, List

from .routing import PARAM_REGEX, Route

_HTTP_ROUTE = re.compile(r"[A-Z]+:/")


def message_routes(routes: Iterable[Route]) -> Iterator[Route]:
    """Yield the routes a broker subscribes for: every route but the HTTP ones, whose path is
    ``METHOD:/...`` (an HTTP source hosted by the same listener serves those)."""
    return (route for route in routes if not _HTTP_ROUTE.match(route.path))


def route_pattern(path: str, *, separator: str, single: str, multi: str, multi_ends_pattern: bool) -> str:
    """Return the broker pattern of route ``path``.

    ``multi_ends_pattern`` says that the broker only accepts the multi-segment wildcard last
    (NATS ``>``, MQTT ``#``): the pattern then stops there, which lets through a superset.

    >>> route_pattern("order.{id:int}.created", separator=".", single="*", multi="#", multi_ends_pattern=False)
    'order.*.created'
    >>> route_pattern("orders.{rest:path}", separator=".", single="*", multi=">", multi_ends_pattern=True)
    'orders.>'
    """
    pattern: List[str] = []
    for segment in path.split(separator):
        params = [match.group(2) for match in PARAM_REGEX.finditer(segment)]
        if ":path" in params:
            pattern.append(multi)
            if multi_ends_pattern:
                break
        elif params:
            pattern.append(single)
        else:
            pattern.append(segment)
    return separator.join(pattern)


def unique_patterns(patterns: Iterable[str]) -> List[str]:
    """Return ``patterns`` without repeats, in first-seen order."""
    return list(dict.fromkeys(patterns))
