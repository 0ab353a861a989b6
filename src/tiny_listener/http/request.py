"""The request a handler receives: a :class:`~tiny_listener.Context`, one per HTTP request.

Being the request's context, it is injected by annotation (``request: Request``) with no extra
machinery, lives exactly as long as the request's event, and is released after it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Tuple
from urllib.parse import parse_qsl

from ..context import Context
from ..errors import ValidationError
from ..validation import field_error
from .body import BodyChannel, RequestAborted
from .headers import Headers

if TYPE_CHECKING:
    from .._types import EventData, Scope
    from ..listener import Listener
    from .protocol import RequestHead
    from .server import HTTPConnection


class Request(Context):
    """One HTTP request: ``method``, ``path`` (percent-decoded), ``target`` (raw, with the
    query), ``query_string``, ``query``, ``headers``, ``client`` ((host, port) or ``None``),
    ``http_version``, and the body through :meth:`body`, :meth:`stream`, :meth:`text`,
    :meth:`json`.

    Reading the body raises :class:`~tiny_listener.http.RequestAborted` if the client
    disconnects or breaks a limit before sending it all.
    """

    __slots__ = (
        "_body",
        "_body_complete",
        "_channel",
        "_connection",
        "_headers",
        "_query",
        "_raw_headers",
        "client",
        "http_version",
        "method",
        "path",
        "query_string",
        "target",
    )

    def __init__(self, listener: Listener[Any], cid: str, scope: Scope | None = None) -> None:
        super().__init__(listener, cid, scope)
        self.method = ""
        self.target = ""
        self.path = ""
        self.query_string = ""
        self.http_version = "1.1"
        self.client: Tuple[str, int] | None = None
        self._raw_headers: Any = ()
        self._headers: Headers | None = None
        self._query: Dict[str, str] | None = None
        self._channel: BodyChannel | None = None
        self._body_complete = False
        self._body: bytes | None = None
        self._connection: HTTPConnection | None = None

    def _bind(self, connection: HTTPConnection, head: RequestHead, path: str, query_string: str) -> None:
        self._connection = connection
        self.client = connection.client
        self.method = head.method
        self.target = head.target
        self.path = path
        self.query_string = query_string
        self.http_version = head.http_version
        self._raw_headers = head.headers

    # ------------------------------------------------------------------ head

    @property
    def headers(self) -> Headers:
        """The request headers, case-insensitive."""
        if self._headers is None:
            self._headers = Headers(self._raw_headers)
        return self._headers

    @property
    def query(self) -> Dict[str, str]:
        """Query parameters, percent-decoded; the last value wins for a repeated name."""
        if self._query is None:
            self._query = dict(self.query_list)
        return self._query

    @property
    def query_list(self) -> List[Tuple[str, str]]:
        """Every query parameter as a (name, value) pair, in order."""
        return parse_qsl(self.query_string, keep_blank_values=True)

    # ------------------------------------------------------------------ body

    def _body_channel(self) -> BodyChannel:
        if self._channel is None:
            connection = self._connection
            if connection is None:
                raise RequestAborted("this context is not bound to an HTTP connection")
            self._channel = BodyChannel(connection.body_wanted, connection.body_drained)
            if self._body_complete:
                self._channel.finish()
        return self._channel

    def _feed_body(self, data: bytes) -> BodyChannel:
        channel = self._body_channel()
        channel.feed(data)
        return channel

    def _finish_body(self) -> None:
        self._body_complete = True
        if self._channel is not None:
            self._channel.finish()

    def _abort_body(self, reason: str) -> None:
        if not self._body_complete:
            self._body_channel().abort(reason)

    @property
    def buffered_body_bytes(self) -> int:
        """Body bytes received and not read by the handler yet."""
        return 0 if self._channel is None else self._channel.buffered

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body chunk by chunk as it arrives (once: read chunks are not kept)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._body_complete and self._channel is None:
            return
        channel = self._body_channel()
        while True:
            chunk = await channel.read()
            if not chunk:
                return
            yield chunk

    async def body(self) -> bytes:
        """Return the whole body (kept, so later calls return it again)."""
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.stream()])
        return self._body

    async def text(self, encoding: str = "utf-8") -> str:
        """Return the body decoded with ``encoding``; raises ``UnicodeDecodeError``."""
        return (await self.body()).decode(encoding)

    async def json(self) -> Any:
        """Return the body parsed as JSON; raises ``ValueError`` if it is not JSON."""
        return json.loads(await self.body())

    async def read_event_data(self) -> EventData:
        """Return the request's event data, for handlers that declare typed data: the JSON body
        (a JSON object is the data itself, any other value is ``{"payload": value}``, as on the
        broker listeners; an empty body is ``{}``, and so is the data of a context that is not a
        request: one the app made itself with ``new_ctx()``).

        Raises :class:`~tiny_listener.ValidationError` (type ``json_invalid``, 422 for the
        client) if the body is not JSON.
        """
        if self._connection is None and self._body is None:
            return {}
        body = await self.body()
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except ValueError as exc:
            position = getattr(exc, "pos", getattr(exc, "start", 0))
            raise ValidationError([field_error("JSON decode error", "json_invalid", (position,))]) from None
        return value if isinstance(value, dict) else {"payload": value}
