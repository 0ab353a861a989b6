"""Send one message through an app's broker, for ``tiny-listener publish``."""

from __future__ import annotations

import asyncio
from typing import Any, List, Tuple, Type

from ..errors import ListenerError, NoReply
from ..listener import Listener
from ..sources._broker_log import quiet_client_loggers
from ..sources.broker import BrokerSource, NotConnected


class CannotPublish(ListenerError):
    """The app hosts no broker source that can publish, or the broker cannot be reached or
    refused the message; the message says which, on one line."""


def publishing_source(listener: Listener[Any], name: str | None = None) -> BrokerSource:
    """Return the first broker source of ``listener`` that can publish (named ``name``, if
    given). Raises :class:`CannotPublish` if there is none."""
    found: List[BrokerSource] = [
        source for source in listener.sources if isinstance(source, BrokerSource) and source.can_publish
    ]
    if name is not None:
        found = [source for source in found if source.name == name]
        if not found:
            raise CannotPublish(f"{listener!r} hosts no broker source named {name!r} that can publish")
    if not found:
        raise CannotPublish(f"{listener!r} hosts no broker source that can publish (NATS, RabbitMQ)")
    return found[0]


async def publish_once(source: BrokerSource, path: str, data: Any, *, timeout: float, request: bool = False) -> Any:
    """Connect ``source`` for publishing only, send ``data`` to ``path`` with the source's
    codec, wait for the broker's confirmation (with ``request``: for the reply, which is
    returned), and close. Raises :class:`CannotPublish` saying why it could not, on one line
    (the broker is down, nobody takes the path, no confirmation within ``timeout`` seconds).
    """
    if request and not source.can_request:
        raise CannotPublish(f"{source.broker} source {source.name!r} cannot send requests")
    if source.quiet_client_logs:  # the one line below says what they would say
        quiet_client_loggers(source.client_loggers)
    errors: Tuple[Type[BaseException], ...] = (*source.connection_errors(), NotConnected, asyncio.TimeoutError)
    where = f"{source.broker} at {source.log.url}"
    try:
        try:
            await asyncio.wait_for(source.open_publisher(), timeout)
        except errors as exc:
            raise CannotPublish(f"cannot connect to {where}: {_text(exc)}") from None
        try:
            if request:
                return await source.request(path, data, timeout=timeout)
            await asyncio.wait_for(source.publish(path, data), timeout)
        except NoReply as exc:
            raise CannotPublish(str(exc)) from None
        except errors as exc:
            raise CannotPublish(f"{where} did not take {path!r}: {_text(exc)}") from None
        return None
    finally:
        await source.close()


def _text(error: BaseException) -> str:
    """One line saying what ``error`` is."""
    text = " ".join(str(error).split())
    name = type(error).__name__
    return f"{name}: {text}" if text else name
