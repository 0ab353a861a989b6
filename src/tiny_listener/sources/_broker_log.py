"""What a broker source says, and how: every delivery and connection log line, in one place.

The same words, levels and fields on every broker, on the logger ``tiny_listener.<kind>``
(``tiny_listener.nats``, ``tiny_listener.redis``...). Each record carries the fields
``broker`` and, for a message, ``event_path``, ``message_id``, ``attempt`` and (for a dead
letter) ``reason`` in ``record.__dict__``, for structured log formatters.

=================  =======  =================================================================
what happened      level    line
=================  =======  =================================================================
connected          INFO     ``connected to NATS at <url>: consuming <intake> (up to N in flight)``
cannot connect     WARNING  ``NATS at <url> is unreachable: cannot connect (<error>); retrying in 0.10s``
connection lost    WARNING  ``NATS at <url> is unreachable: consuming stopped (<error>); N message(s) ...``
intake cancelled   WARNING  ``RabbitMQ at <url> cancelled consuming <intake> (<error>): <why>; N message(s) ...``
intake made again  WARNING  ``consumer 'x' of stream 'y' is gone from NATS at <url> (<why>): created it again``
recovered          WARNING  ``reconnected to NATS at <url>: consuming <intake> again``
disconnected       INFO     ``disconnected from NATS at <url>``
retry              WARNING  ``NATS message 7: event 'a.b' failed on attempt 1 of 4 (<error>); retrying in 0.50s``
dead letter        ERROR    ``NATS message 7: event 'a.b' ...; dead-lettered to '<target>' (<reason>)``
dropped            ERROR    ``NATS message 7: event 'a.b' ...; dropped (<reason>): no dead-letter target ...``
not dead-lettered  ERROR    ``NATS message 7: event 'a.b' ...; could not dead-letter it ...; handed back ...``
not settled        WARNING  ``NATS message 7: could not acknowledge event 'a.b' (<error>); NATS will redeliver it``
=================  =======  =================================================================

A retry is one WARNING line without a traceback; the last failure of a handler is one ERROR
line with the handler's traceback (a message that cannot become an event, no route or an
undecodable payload, has no traceback worth showing). Recovery is a WARNING like the loss it
ends, so that whoever sees one sees the other. Both outage lines begin with what is away,
``<broker> at <url> is unreachable``, so one search finds every outage of every broker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, Tuple

from ..delivery import HANDLER_FAILED

if TYPE_CHECKING:
    from .broker import BrokerMessage

# Records logged by third-party client libraries at this level or below stay as they are.
_DEMOTED = logging.DEBUG


class BrokerLog:
    """The log lines of one broker source: ``broker`` names it in lines ("NATS"), ``url`` is
    shown without its password."""

    def __init__(self, logger: logging.Logger, broker: str, url: str) -> None:
        self.logger = logger
        self.broker = broker
        self.url = url

    def _fields(self, message: BrokerMessage | None = None, reason: str | None = None) -> Dict[str, Any]:
        fields: Dict[str, Any] = {"broker": self.broker}
        if message is not None:
            fields.update(event_path=message.path, message_id=message.message_id, attempt=message.attempt)
        if reason is not None:
            fields["reason"] = reason
        return fields

    # ------------------------------------------------------------------ connection

    def connected(self, intake: str, max_in_flight: int) -> None:
        self.logger.info("connected to %s at %s: consuming %s (up to %d in flight)", self.broker, self.url, intake,
                         max_in_flight, extra=self._fields())

    def reconnected(self, intake: str) -> None:
        self.logger.warning("reconnected to %s at %s: consuming %s again", self.broker, self.url, intake,
                            extra=self._fields())

    def cannot_connect(self, error: BaseException, delay: float) -> None:
        self.logger.warning("%s at %s is unreachable: cannot connect (%r); retrying in %.2fs", self.broker, self.url,
                            error, delay, extra=self._fields())

    def lost(self, error: BaseException | None, in_flight: int, delay: float) -> None:
        self.logger.warning(
            "%s at %s is unreachable: consuming stopped (%r); %d message(s) in flight will be redelivered; "
            "reconnecting in %.2fs",
            self.broker, self.url, error or "connection closed", in_flight, delay, extra=self._fields(),
        )

    def made_again(self, what: str, why: str) -> None:
        """The broker, reachable, no longer had ``what`` the intake consumes from (a group, a
        consumer, a stream deleted): it was created again on the same connection."""
        self.logger.warning("%s is gone from %s at %s (%s): created it again", what, self.broker, self.url, why,
                            extra=self._fields())

    def cancelled(self, intake: str, error: BaseException | None, why: str, in_flight: int, delay: float) -> None:
        """The broker, reachable, stopped the intake (a queue deleted): not an outage."""
        self.logger.warning(
            "%s at %s cancelled consuming %s (%r): %s; %d message(s) were in flight; setting up again in %.2fs",
            self.broker, self.url, intake, error, why, in_flight, delay, extra=self._fields(),
        )

    def disconnected(self) -> None:
        self.logger.info("disconnected from %s at %s", self.broker, self.url, extra=self._fields())

    def handed_back(self, count: int) -> None:
        self.logger.info("handed back %d message(s) received as intake stopped", count, extra=self._fields())

    # ------------------------------------------------------------------ messages

    def retrying(self, message: BrokerMessage, error: BaseException, attempts: int, delay: float) -> None:
        self.logger.warning(
            "%s message %s: event %r failed on attempt %d of %d (%r); retrying in %.2fs",
            self.broker, message.message_id, message.path, message.attempt, attempts, error, delay,
            extra=self._fields(message),
        )

    def _failure(self, message: BrokerMessage, reason: str, error: BaseException, handler: str | None,
                 attempts: int) -> str:
        """How a final failure reads: what went wrong with the message, before what was done."""
        if reason == HANDLER_FAILED:
            where = f" in handler {handler}" if handler else ""
            return (f"{self.broker} message {message.message_id}: event {message.path!r} failed{where} on attempt "
                    f"{message.attempt} of {attempts}, the last ({error!r})")
        return f"{self.broker} message {message.message_id}: event {message.path!r} cannot be handled ({error!r})"

    def dead_lettered(self, message: BrokerMessage, target: str, reason: str, error: BaseException,
                      handler: str | None, attempts: int) -> None:
        self.logger.error(
            "%s; dead-lettered to %r (%s)", self._failure(message, reason, error, handler, attempts), target, reason,
            exc_info=error if reason == HANDLER_FAILED else None, extra=self._fields(message, reason),
        )

    def dropped(self, message: BrokerMessage, reason: str, error: BaseException, handler: str | None,
                attempts: int) -> None:
        self.logger.error(
            "%s; dropped (%s): no dead-letter target is configured",
            self._failure(message, reason, error, handler, attempts), reason,
            exc_info=error if reason == HANDLER_FAILED else None, extra=self._fields(message, reason),
        )

    def dead_letter_failed(self, message: BrokerMessage, target: str, reason: str, error: BaseException,
                           handler: str | None, attempts: int, cause: BaseException, delay: float) -> None:
        self.logger.error(
            "%s; could not dead-letter it to %r (%r); handed back for redelivery in %.2fs",
            self._failure(message, reason, error, handler, attempts), target, cause, delay,
            exc_info=error if reason == HANDLER_FAILED else None, extra=self._fields(message, reason),
        )

    def not_settled(self, message: BrokerMessage, action: str, error: BaseException) -> None:
        self.logger.warning(
            "%s message %s: could not %s event %r (%r); %s will redeliver it",
            self.broker, message.message_id, action, message.path, error, self.broker, extra=self._fields(message),
        )

    def batch_not_settled(self, count: int, action: str, error: BaseException) -> None:
        """``count`` messages settled together (a batched acknowledgement) were not."""
        self.logger.warning(
            "%s: could not %s %d message(s) (%r); %s will redeliver them",
            self.broker, action, count, error, self.broker, extra=self._fields(),
        )


class DemoteToDebug(logging.Filter):
    """On a third-party client's logger: its records become DEBUG records, so they show only
    when debugging (``--log-level debug``); the source says the same in its own words.

    The logger let the record through at its own level; as a DEBUG record it goes on only if
    the logger is enabled for DEBUG (a handler without a level would print it otherwise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > _DEMOTED:
            record.levelno, record.levelname = _DEMOTED, logging.getLevelName(_DEMOTED)
            return logging.getLogger(record.name).isEnabledFor(_DEMOTED)
        return True


def quiet_client_loggers(names: Tuple[str, ...]) -> None:
    """Install :class:`DemoteToDebug` on the loggers ``names`` (once each)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, DemoteToDebug) for existing in logger.filters):
            logger.addFilter(DemoteToDebug())
