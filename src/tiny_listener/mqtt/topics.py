"""MQTT topic filters derived from route paths, without any network code.

A route path is read as a topic: levels separated by ``/``. A level that is one parameter
(``{room}``, ``{id:int}``) becomes ``+``; a trailing ``{x:path}`` level becomes ``#``; literal
levels stay. Anything else cannot be expressed exactly as a filter and is refused with a
:class:`TopicFilterError` when the listener starts, naming the route: a parameter sharing a
level with text (``sensor-{id}``), a ``{x:path}`` before the last level, literal ``+``/``#``
(which MQTT reads as wildcards). ``@app.on_event(path, topic="...")`` gives such a route its
filter explicitly; the route then decides, message by message, what it handles.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

from ..errors import RouteError
from ..routing import PARAM_REGEX, Route

MULTI_LEVEL_CONVERTORS = frozenset({"path"})
"""Convertors whose text may span ``/``: they can only be the ``#`` level."""


class TopicFilterError(RouteError):
    """A route's path cannot be expressed as an MQTT topic filter."""

    def __init__(self, route: Route, reason: str) -> None:
        super().__init__(
            f"route {route.path!r} (handler {route.name}) cannot be expressed as an MQTT topic filter: {reason}; "
            f"give it one explicitly with on_event({route.path!r}, topic='...')"
        )
        self.route = route


def route_filter(route: Route) -> str:
    """Return the topic filter of ``route``: its ``topic`` option if set, else derived from
    its path as the module doc says. Raises :class:`TopicFilterError`."""
    explicit = route.opts.get("topic")
    if explicit is not None:
        if not isinstance(explicit, str) or not valid_filter(explicit):
            raise TopicFilterError(route, f"its topic option {explicit!r} is not a valid topic filter")
        return explicit
    path = route.path
    if not path:
        raise TopicFilterError(route, "the path is empty")
    levels = path.split("/")
    filter_levels: List[str] = []
    for index, level in enumerate(levels):
        params = list(PARAM_REGEX.finditer(level))
        if not params:
            if "+" in level or "#" in level or "\x00" in level:
                raise TopicFilterError(route, f"level {level!r} contains an MQTT wildcard character")
            filter_levels.append(level)
            continue
        whole = len(params) == 1 and params[0].group(0) == level
        convertor = (params[0].group(2) or ":str")[1:] if whole else ""
        if convertor in MULTI_LEVEL_CONVERTORS:
            if index != len(levels) - 1:
                raise TopicFilterError(route, f"{{...:{convertor}}} must be the last level, as '#' is")
            filter_levels.append("#")
        elif whole:
            filter_levels.append("+")
        else:
            raise TopicFilterError(route, f"level {level!r} mixes a parameter with text (MQTT matches whole levels)")
    return "/".join(filter_levels)


def valid_filter(topic_filter: str) -> bool:
    """True if ``topic_filter`` is a well-formed MQTT filter (wildcards as whole levels,
    ``#`` last; a ``$share/group/`` prefix allowed)."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if level == "#":
            if index != len(levels) - 1:
                return False
        elif level != "+" and ("+" in level or "#" in level):
            return False
    return True


def covers(wide: str, narrow: str) -> bool:
    """True if every topic matching filter ``narrow`` also matches filter ``wide``."""
    wide_levels = wide.split("/")
    narrow_levels = narrow.split("/")
    if narrow.startswith("$") and wide_levels[0] in ("+", "#"):
        return False  # a leading wildcard never matches a '$' topic ($SYS/...)
    for index, level in enumerate(wide_levels):
        if level == "#":
            return True  # '#' matches the rest, and the parent level too
        if index >= len(narrow_levels):
            return False
        other = narrow_levels[index]
        if other == "#":
            return False
        if level == "+":
            continue
        if level != other:
            return False
    return len(wide_levels) == len(narrow_levels)


def subscriptions(routes: Iterable[Route], default_qos: int) -> List[Tuple[str, int]]:
    """Return the ``(filter, qos)`` pairs to subscribe to for ``routes``, fewest first: a
    filter that another covers is left out (so an overlapping message is not delivered twice),
    and the covering filter gets the highest QoS of the two. A route's ``qos`` option
    overrides ``default_qos``. Raises :class:`TopicFilterError` for a route without a filter,
    ``ValueError`` for a QoS other than 0, 1 or 2."""
    wanted: Dict[str, int] = {}
    for route in routes:
        topic_filter = route_filter(route)
        qos = route.opts.get("qos", default_qos)
        if qos not in (0, 1, 2):
            raise ValueError(f"route {route.path!r} (handler {route.name}): qos must be 0, 1 or 2, not {qos!r}")
        wanted[topic_filter] = max(qos, wanted.get(topic_filter, 0))
    # Distinct filters never cover each other, so what is covered by another can go.
    kept = {f: qos for f, qos in wanted.items() if not any(o != f and covers(o, f) for o in wanted)}
    for topic_filter, qos in wanted.items():
        if topic_filter not in kept:
            for other in kept:
                if covers(other, topic_filter):
                    kept[other] = max(kept[other], qos)
    return list(kept.items())
