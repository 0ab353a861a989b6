"""RabbitMQ listener: a listener hosting one :class:`~tiny_listener.amqp.AMQPSource`.

Everything RabbitMQ does is in :mod:`.source`, on the one broker delivery flow
(:mod:`tiny_listener.sources.broker`); this class keeps the constructor and attributes that
code written for it uses.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..codecs import Codec
from ..listener import CTXType
from ..sources._attribute import SourceAttribute
from ..sources.broker_listener import BrokerListener
from .source import DEFAULT_URL, AMQPSource


class AMQPListener(BrokerListener[CTXType, AMQPSource]):
    """Consume ``queue`` on RabbitMQ at ``url``; every message becomes an event.

    - The event path is the message's ``x-event-path`` header, else its routing key; the body,
      decoded by ``codec`` (JSON by default), is the event data.
    - ``declare`` declares the queue (durable if ``durable``); with ``declare=False`` it must
      exist. With ``exchange`` (a topic exchange, declared too if ``declare``) and
      ``bind_routes``, the queue is bound with one key per route: ``order.{id}.created`` ->
      ``order.*.created``, ``{rest:path}`` -> ``#``.
    - At most ``max_in_flight`` messages are handled at once (the channel's prefetch).
    - A message is acknowledged after its handler succeeded. When the handler fails it is
      retried up to ``max_retries`` times, after ``retry_backoff`` seconds doubling up to
      ``max_retry_delay``, by waiting in a retry queue; then it is dead-lettered to the
      ``<queue>.dead`` queue (or the queue named by ``dead_letter``) with the error in its
      headers. A message that matches no route or cannot be decoded is dead-lettered at once.
      ``dead_letter=False`` logs such messages as errors and acknowledges them instead.
    - A lost connection is logged and re-made, after ``reconnect_backoff`` seconds doubling up to
      ``max_reconnect_delay``; messages in flight then are redelivered by RabbitMQ.
    - At shutdown, consuming stops, in-flight messages finish and are acknowledged (up to
      ``shutdown_timeout``); unfinished ones are requeued for another consumer.

    ``app.source`` is the :class:`~tiny_listener.amqp.AMQPSource` doing all this; the settings
    are attributes of both. Raises ``ValueError`` for a URL that is not an AMQP URL.
    """

    # RabbitMQ's settings; those of every broker (url, codec, max_in_flight...) are BrokerListener's.
    queue: SourceAttribute[str] = SourceAttribute()
    exchange: SourceAttribute[str | None] = SourceAttribute()
    declare: SourceAttribute[bool] = SourceAttribute()
    durable: SourceAttribute[bool] = SourceAttribute()
    bind_routes: SourceAttribute[bool] = SourceAttribute()
    connection_name: SourceAttribute[str] = SourceAttribute()

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        queue: str,
        exchange: str | None = None,
        declare: bool = True,
        durable: bool = True,
        bind_routes: bool = True,
        codec: Codec | None = None,
        max_in_flight: int = 32,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        dead_letter: str | bool | None = True,
        reconnect_backoff: float = 0.1,
        connection_name: str | None = None,
        max_event_history: int | None = None,
        shutdown_timeout: float | None = None,
        max_retry_delay: float = 30.0,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        super().__init__(
            AMQPSource(
                url,
                queue=queue,
                exchange=exchange,
                declare=declare,
                durable=durable,
                bind_routes=bind_routes,
                codec=codec,
                max_in_flight=max_in_flight,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                max_retry_delay=max_retry_delay,
                dead_letter=dead_letter,
                reconnect_backoff=reconnect_backoff,
                max_reconnect_delay=max_reconnect_delay,
                connection_name=connection_name,
            ),
            max_event_history=max_event_history,
            shutdown_timeout=shutdown_timeout,
        )

    @property
    def dead_letter_queue(self) -> str | None:
        """The queue dead letters go to; None with ``dead_letter=False``."""
        return self.source.dead_letter_target

    async def publish(
        self,
        path: str,
        data: Any = None,
        *,
        exchange: str | None = None,
        routing_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish an event ``path`` with ``data`` (encoded by the listener's codec) and return
        once RabbitMQ confirmed it.

        It goes to ``exchange`` (default: the listener's exchange, else the default exchange)
        with ``routing_key`` (default: ``path`` on a named exchange, the listener's queue on
        the default exchange); the path also travels in the ``x-event-path`` header.
        Raises :class:`~tiny_listener.amqp.NotConnected` while there is no connection, and
        ``aio_pika.exceptions.DeliveryError`` if no queue receives the message.
        """
        await self.source.publish(path, data, exchange=exchange, routing_key=routing_key, headers=headers)
