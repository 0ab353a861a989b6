"""Topics, subscriptions, event paths and dead-letter headers of the Kafka source, without any
network code.

- **Routes become a subscription.** A route whose path is a topic name (``orders``) subscribes
  to that topic; a route with parameters (``orders.{region}``) subscribes by pattern to the
  topics its path matches (``orders.eu``, ``orders.us``). A route can name its topic with
  ``@app.on_event(path, topic="orders")`` (then its path need not be a topic name: the event
  path comes from a header). A route that can be neither is a :class:`SubscriptionError` when
  the source starts. Dead-letter topics are kept out of pattern subscriptions.
- **A record becomes an event path** (``path_from``): its topic (``"topic"``, the default), its
  ``x-event-path`` header (``"header"``), or the header when the record has one and else its
  topic (``"header-or-topic"``).
- **Dead letters** go to ``<topic>.dead`` by default, with headers saying where the record was
  and why it was dead-lettered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Sequence, Tuple

from ..delivery import ATTEMPT, DEAD_LETTER_REASON, EVENT_PATH, LAST_ERROR, error_text
from ..errors import ListenerError
from ..routing import PARAM_REGEX, Route
from ..wildcards import message_routes

TOPIC_OPT = "topic"
"""``@app.on_event(path, topic="...")`` names the topic a route subscribes to."""

TOPIC_PLACEHOLDER = "{topic}"
"""In a dead-letter target, stands for the record's topic."""

DEFAULT_DEAD_LETTER = "{topic}.dead"
"""Where dead letters go when ``dead_letter=True``: a topic beside each consumed topic."""

PATH_FROM = ("topic", "header", "header-or-topic")
"""How a record's event path is found; see the module's documentation."""

# Dead-letter headers of Kafka only; the others are shared by every broker (delivery.py).
ORIGINAL_TOPIC = "x-original-topic"
ORIGINAL_PARTITION = "x-original-partition"
ORIGINAL_OFFSET = "x-original-offset"
ORIGINAL_KEY = "x-original-key"

_DEAD_LETTER_HEADERS = frozenset(
    {EVENT_PATH, DEAD_LETTER_REASON, LAST_ERROR, ATTEMPT, ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET,
     ORIGINAL_KEY}
)

# What Kafka accepts in a topic name.
_TOPIC_TEXT = re.compile(r"[A-Za-z0-9._-]*\Z")
MAX_TOPIC_LENGTH = 249

Headers = Sequence[Tuple[str, bytes]]
"""Kafka record headers: (name, value) pairs, names may repeat."""


class SubscriptionError(ListenerError):
    """A route cannot become a Kafka subscription (its path is not a topic name or a pattern
    of topic names, and it names no ``topic``), or the source has nothing to subscribe to."""

    def __init__(self, route: Route | None, problem: str) -> None:
        self.route = route
        self.problem = problem
        if route is None:
            super().__init__(f"nothing to consume from Kafka: {problem}")
        else:
            super().__init__(
                f"route {route.path!r} (handler {route.name}) cannot be a Kafka subscription: {problem}; "
                f"give it @app.on_event(..., topic=\"<topic>\") or give the source topics=[...] "
                f"(with path_from=\"header\" to take event paths from the {EVENT_PATH!r} header)"
            )


def check_topic(topic: str) -> str:
    """Return ``topic`` if Kafka accepts it as a topic name; raise ``ValueError`` saying why not."""
    if not topic or len(topic) > MAX_TOPIC_LENGTH or not _TOPIC_TEXT.match(topic) or topic in (".", ".."):
        raise ValueError(
            f"{topic!r} is not a Kafka topic name: 1 to {MAX_TOPIC_LENGTH} letters, digits, '.', '_' or '-'"
        )
    return topic


@dataclass(frozen=True)
class Subscription:
    """What a Kafka consumer subscribes to: literal ``topics``, or a ``pattern`` (a regular
    expression matched against whole topic names) when some route has parameters."""

    topics: Tuple[str, ...] = ()
    pattern: str | None = None

    def describe(self) -> str:
        """Say what is consumed, for log lines."""
        if self.pattern is not None:
            return f"topics matching {self.pattern!r}"
        return "topic " + ", ".join(repr(topic) for topic in self.topics)


def route_topic(route: Route) -> Tuple[str, bool]:
    """Return what ``route`` subscribes to, as ``(text, is_pattern)``: its ``topic`` option, its
    path if that is a topic name, else a regular expression of the topic names its path
    matches. Raises :class:`SubscriptionError` if the path's literal text cannot be in a topic
    name, or a ``topic`` option is not a topic name."""
    option = route.opts.get(TOPIC_OPT)
    if option is not None:
        try:
            return check_topic(str(option)), False
        except ValueError as exc:
            raise SubscriptionError(route, f"its topic option: {exc}") from None
    pieces = PARAM_REGEX.split(route.path)  # literal, name, ":kind" or None, literal, ...
    literals = pieces[0::3]
    for literal in literals:
        if not _TOPIC_TEXT.match(literal):
            bad = sorted({char for char in literal if not _TOPIC_TEXT.match(char)})
            raise SubscriptionError(
                route, f"topic names hold only letters, digits, '.', '_' and '-', not {' '.join(map(repr, bad))}"
            )
    if len(pieces) == 1:
        try:
            return check_topic(route.path), False
        except ValueError as exc:
            raise SubscriptionError(route, str(exc)) from None
    regex = re.escape(literals[0])
    for i in range(1, len(pieces), 3):
        regex += f"(?:{route.convertors[pieces[i]].regex})" + re.escape(pieces[i + 2])
    return regex, True


def dead_letter_exclusion(target: str | None) -> str | None:
    """Return a regular expression of the dead-letter topics that ``target`` (a topic name,
    perhaps holding ``{topic}``) names, or None without a target."""
    if not target:
        return None
    before, placeholder, after = target.partition(TOPIC_PLACEHOLDER)
    if not placeholder:
        return re.escape(target)
    return re.escape(before) + ".+" + re.escape(after)


def subscription(
    routes: Iterable[Route], topics: Sequence[str] | None = None, dead_letter: str | None = None
) -> Subscription:
    """Return the subscription of a source: ``topics`` when given, else one per route (see
    :func:`route_topic`; HTTP routes aside: :func:`~tiny_listener.wildcards.message_routes`),
    a pattern if any route needs one, which leaves out the dead-letter
    topics of ``dead_letter``. Raises :class:`SubscriptionError` for a route that cannot be a
    subscription, or when there is nothing to subscribe to; ``ValueError`` for a topic in
    ``topics`` that is not a topic name."""
    if topics is not None:
        chosen = tuple(dict.fromkeys(check_topic(topic) for topic in topics))
        if not chosen:
            raise SubscriptionError(None, "topics=[] names no topic")
        return Subscription(topics=chosen)
    literal: List[str] = []
    patterns: List[str] = []
    for route in message_routes(routes):
        text, is_pattern = route_topic(route)
        (patterns if is_pattern else literal).append(text)
    literal = list(dict.fromkeys(literal))
    if not patterns:
        if not literal:
            raise SubscriptionError(None, "the app has no routes and the source names no topics")
        return Subscription(topics=tuple(literal))
    alternatives = "|".join(dict.fromkeys([*map(re.escape, literal), *patterns]))
    excluded = dead_letter_exclusion(dead_letter)
    guard = f"(?!(?:{excluded})\\Z)" if excluded else ""
    return Subscription(pattern=f"^{guard}(?:{alternatives})\\Z")


def dead_letter_topic(target: str, topic: str) -> str:
    """Return the dead-letter topic of a record of ``topic``: ``target`` with ``{topic}``
    replaced."""
    return target.replace(TOPIC_PLACEHOLDER, topic)


def header_value(headers: Headers, name: str) -> bytes | None:
    """Return the value of the last header ``name``, or None."""
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def record_path(topic: str, headers: Headers, path_from: str) -> str:
    """Return the event path of a record of ``topic`` with ``headers`` (see ``PATH_FROM``).

    A record that should carry the ``x-event-path`` header but does not (or whose value is not
    UTF-8) has the empty path, which no route matches: it is dead-lettered as ``no-route``.
    """
    if path_from == "topic" or not headers:
        return "" if path_from == "header" else topic
    value = header_value(headers, EVENT_PATH)
    if value is None:
        return "" if path_from == "header" else topic
    try:
        return value.decode()
    except UnicodeDecodeError:
        return ""


def dead_letter_headers(
    headers: Headers,
    *,
    path: str,
    reason: str,
    error: BaseException,
    attempts: int,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
) -> List[Tuple[str, bytes]]:
    """Return the headers of a dead letter: the record's own (less those named below), its
    event path, why it was dead-lettered, the error, how many attempts were made, and the
    topic, partition, offset and key it had."""
    found = [(name, value) for name, value in headers if name not in _DEAD_LETTER_HEADERS]
    found += [
        (EVENT_PATH, path.encode()),
        (DEAD_LETTER_REASON, reason.encode()),
        (LAST_ERROR, error_text(error).encode()),
        (ATTEMPT, str(attempts).encode()),
        (ORIGINAL_TOPIC, topic.encode()),
        (ORIGINAL_PARTITION, str(partition).encode()),
        (ORIGINAL_OFFSET, str(offset).encode()),
    ]
    if key is not None:
        found.append((ORIGINAL_KEY, key))
    return found


def encode_headers(headers: Mapping[str, str | bytes] | None) -> List[Tuple[str, bytes]]:
    """Return ``headers`` as Kafka record headers (``str`` values are encoded as UTF-8)."""
    if not headers:
        return []
    return [(name, value.encode() if isinstance(value, str) else bytes(value)) for name, value in headers.items()]


def encode_key(key: str | bytes | None) -> bytes | None:
    """Return a record key as bytes (``str`` keys are encoded as UTF-8)."""
    if key is None or isinstance(key, bytes):
        return key
    return key.encode()
