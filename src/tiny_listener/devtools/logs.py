"""Structured logs: one line per event (path, handler, context id, duration, outcome) and a
JSON formatter for every log line.

:class:`EventLogObserver` logs at DEBUG on ``tiny_listener.events``: an app logs nothing per
event unless asked to (``--log-level debug``), so default output and dispatch cost stay as
they are. Failures are already logged at ERROR by the core, with the same field names.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from typing import Any, Dict

from ..event import Event
from ..listener import Listener
from ..observability.metrics import event_outcome

EVENT_LOGGER = "tiny_listener.events"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class EventLogObserver:
    """An event observer that logs one line per ended event, with ``extra`` fields
    ``event_path``, ``handler``, ``cid``, ``duration_ms`` and ``outcome`` (and ``error``)."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self.logger = logger or logging.getLogger(EVENT_LOGGER)
        self.level = level
        self._started: Dict[Event[Any], float] = {}

    def event_started(self, event: Event[Any]) -> None:
        if self.logger.isEnabledFor(self.level):
            self._started[event] = time.perf_counter()

    def event_ended(self, event: Event[Any]) -> None:
        started = self._started.pop(event, None)
        if started is None:
            return
        fields: Dict[str, Any] = {
            "event_path": event.path,
            "handler": event.route.name,
            "cid": event.ctx.cid,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "outcome": event_outcome(event),
        }
        if event.error is not None:
            fields["error"] = repr(event.error)
        self.logger.log(
            self.level,
            "event %r handler=%s cid=%s outcome=%s duration_ms=%.3f",
            fields["event_path"],
            fields["handler"],
            fields["cid"],
            fields["outcome"],
            fields["duration_ms"],
            extra=fields,
        )


def log_events(listener: Listener[Any], level: int = logging.DEBUG) -> EventLogObserver | None:
    """Add an :class:`EventLogObserver` to ``listener`` if ``tiny_listener.events`` logs at
    ``level``; return it, or ``None`` when it would log nothing (and so costs nothing)."""
    logger = logging.getLogger(EVENT_LOGGER)
    if not logger.isEnabledFor(level):
        return None
    observer = EventLogObserver(logger, level)
    listener.add_event_observer(observer)
    return observer


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, every ``extra`` field, and ``exc_info`` (the traceback) if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: Dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc_info"] = record.exc_text
        return json.dumps(payload, default=repr, ensure_ascii=False)


def use_json_format(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (the root logger by default) a :class:`JsonFormatter`."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())
