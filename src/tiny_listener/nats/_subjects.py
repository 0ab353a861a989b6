"""Subjects and headers of a :class:`~tiny_listener.nats.NATSListener`, without network code.

Route paths become subject filters: ``orders.{id}`` -> ``orders.*``, ``{rest:path}`` -> ``>``
(``>`` must end a subject, so ``a.{x:path}.b`` becomes ``a.>``). A route can name its own with
``@app.on_event(path, subject="...")``. The event path of a message is its subject.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping

from ..delivery import ATTEMPT as ATTEMPT
from ..delivery import DEAD_LETTER_REASON as DEAD_LETTER_REASON
from ..delivery import EVENT_PATH as EVENT_PATH
from ..delivery import LAST_ERROR as LAST_ERROR
from ..delivery import error_text
from ..routing import Route
from ..wildcards import message_routes, route_pattern, unique_patterns

SUBJECT_OPT = "subject"
"""``@app.on_event(path, subject="...")`` overrides the subject filter derived from ``path``."""

# Dead-letter headers of NATS only; the others are shared by the broker listeners (delivery.py).
ORIGINAL_STREAM = "x-original-stream"
ORIGINAL_SEQUENCE = "x-original-sequence"

_STREAM_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def route_subject(route: Route) -> str:
    """Return the subject filter of ``route``: its ``subject`` option, else derived from its path."""
    override = route.opts.get(SUBJECT_OPT)
    if override is not None:
        return str(override)
    return route_pattern(route.path, separator=".", single="*", multi=">", multi_ends_pattern=True)


def route_subjects(routes: Mapping[str, Route]) -> List[str]:
    """Return the subject filters of ``routes`` (HTTP routes aside, see
    :func:`~tiny_listener.wildcards.message_routes`), without repeats, in registration order."""
    return unique_patterns(route_subject(route) for route in message_routes(routes.values()))


def dead_letter_subject(stream: str) -> str:
    """Return the default dead-letter subject of ``stream``."""
    return f"deadletter.{stream}"


def dead_letter_stream(stream: str) -> str:
    """Return the name of the stream that keeps the dead letters of ``stream``."""
    return _STREAM_NAME_UNSAFE.sub("_", f"{stream}_dead")


def dead_letter_headers(
    headers: Mapping[str, Any] | None,
    path: str,
    reason: str,
    error: BaseException,
    deliveries: int,
    stream: str,
    sequence: int,
) -> Dict[str, str]:
    """Return the headers of a dead-lettered message: the original ones, its event path, why
    it was dead-lettered, the error, how often it was delivered and where it was stored."""
    return {
        **{str(key): str(value) for key, value in (headers or {}).items()},
        EVENT_PATH: path,
        DEAD_LETTER_REASON: reason,
        LAST_ERROR: error_text(error, one_line=True),  # NATS headers cannot hold line breaks
        ATTEMPT: str(deliveries),
        ORIGINAL_STREAM: stream,
        ORIGINAL_SEQUENCE: str(sequence),
    }
