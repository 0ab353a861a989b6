"""Publishing events to a Redis stream, from any process."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Iterable, List, Tuple, Type

from ..codecs import Codec, JsonCodec
from ..optional import require
from ._config import DEFAULT_URL
from ._message import encode_event

PIPELINE_CHUNK = 1000
"""Events sent per round trip by :meth:`RedisPublisher.publish_many`."""


class RedisPublisher:
    """Writes events (a path and its data) to Redis streams, for a :class:`RedisStreamListener`.

    Give it a ``url`` (it then owns its client and ``aclose()`` closes it) or an existing
    ``redis.asyncio.Redis`` ``client``. ``codec`` encodes the data (JSON by default) and must
    match the listeners'. ``maxlen``, if set, trims each stream to about that many entries:
    trimming drops the oldest entries even if no worker handled them yet.

        async with RedisPublisher("redis://127.0.0.1:6379/0") as publisher:
            await publisher.publish("orders", "order:42:created", {"amount": 10})
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        client: Any = None,
        codec: Codec | None = None,
        maxlen: int | None = None,
    ) -> None:
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.maxlen = maxlen
        self._owns_client = client is None
        if client is None:
            client = require("redis.asyncio", extra="redis").from_url(url)
        self.client: Any = client

    async def publish(self, stream: str, path: str, data: Any = None) -> bytes:
        """Append event ``path`` with ``data`` to ``stream``; return the entry id.

        Raises the codec's error if ``data`` cannot be encoded, and redis-py's errors
        (``redis.exceptions.ConnectionError``...) if Redis cannot be reached.
        """
        fields = encode_event(path, data, self.codec)
        entry_id: bytes = await self.client.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
        return entry_id

    async def publish_many(self, stream: str, events: Iterable[Tuple[str, Any]]) -> List[bytes]:
        """Append every ``(path, data)`` of ``events`` to ``stream``, in order, pipelined
        (one round trip per :data:`PIPELINE_CHUNK` events); return the entry ids."""
        ids: List[bytes] = []
        chunk: List[Tuple[str, Any]] = []
        for event in events:
            chunk.append(event)
            if len(chunk) == PIPELINE_CHUNK:
                ids.extend(await self._send_chunk(stream, chunk))
                chunk = []
        if chunk:
            ids.extend(await self._send_chunk(stream, chunk))
        return ids

    async def _send_chunk(self, stream: str, chunk: List[Tuple[str, Any]]) -> List[bytes]:
        async with self.client.pipeline(transaction=False) as pipe:
            for path, data in chunk:
                pipe.xadd(stream, encode_event(path, data, self.codec),
                          maxlen=self.maxlen, approximate=True)
            ids: List[bytes] = await pipe.execute()
        return ids

    async def aclose(self) -> None:
        """Close the client if this publisher made it."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> RedisPublisher:
        return self

    async def __aexit__(
        self, exc_type: Type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def publish(
    stream: str, path: str, data: Any = None, *, url: str = DEFAULT_URL, codec: Codec | None = None
) -> bytes:
    """Publish one event with a short-lived connection; return the entry id.

    Handy in scripts; a program publishing often keeps a :class:`RedisPublisher` instead.
    """
    async with RedisPublisher(url, codec=codec) as publisher:
        return await publisher.publish(stream, path, data)
