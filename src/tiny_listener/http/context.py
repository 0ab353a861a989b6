"""The context of one HTTP request: the request itself, and the ways to answer it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .request import Request
from .responses import HeaderItems, Response, StreamingResponse, to_response
from .server import NOT_STARTED

if TYPE_CHECKING:
    from .._types import Scope
    from ..listener import Listener


class HTTPContext(Request):
    """A :class:`~tiny_listener.http.Request` that can be answered.

    Handlers usually just return a value (see :func:`~tiny_listener.http.responses.to_response`);
    they may instead answer through the context, as the 1.2 tutorial did with
    ``ctx.response(200, b"...")``. Subclass it to add methods, and install the subclass with
    ``app.set_context_cls(MyContext)``.
    """

    __slots__ = ("_response_state", "status_code")

    def __init__(self, listener: Listener[Any], cid: str, scope: Scope | None = None) -> None:
        super().__init__(listener, cid, scope)
        self._response_state = NOT_STARTED
        self.status_code: int | None = None

    @property
    def responded(self) -> bool:
        """True once a response has been started for this request."""
        return self._response_state != NOT_STARTED

    def response(self, status_code: int, data: bytes | str = b"", headers: HeaderItems = None) -> None:
        """Send a whole response now (``data`` as ``str`` is sent as UTF-8 text/plain).

        Raises :class:`~tiny_listener.http.ResponseAlreadyStarted` if one was sent already.
        """
        media_type = "text/plain; charset=utf-8" if isinstance(data, str) else None
        self._send(Response(data, status_code, headers, media_type=media_type))

    def throw_500(self) -> None:
        """Answer ``500 Internal Server Error``, as in the 1.2 tutorial."""
        self.response(500, "Internal Server Error")

    async def respond(self, result: Any) -> None:
        """Send anything a handler may return (a response object, str, bytes, dict, list, None),
        streaming it if it is a :class:`StreamingResponse`.

        Raises :class:`~tiny_listener.http.ResponseAlreadyStarted` if a response was sent
        already, ``TypeError`` for a value that is not a response.
        """
        response = to_response(result)
        if isinstance(response, StreamingResponse):
            connection = self._connection
            if connection is None:
                raise RuntimeError("this context is not bound to an HTTP connection")
            await connection.stream_response(self, response)
        else:
            self._send(response)

    def _send(self, response: Response) -> None:
        connection = self._connection
        if connection is None:
            raise RuntimeError("this context is not bound to an HTTP connection")
        connection.send_response(self, response.status_code, response.head_items(), response.body)
