"""Responses a handler returns (or passes to ``ctx.respond``), and how return values become one.

A handler may return ``str`` (text/plain), ``bytes`` (application/octet-stream), a ``dict`` or
``list`` (JSON), ``None`` (204 No Content), a :class:`Response` or a
:class:`StreamingResponse`. A response whose body is known carries ``Content-Length``; a
streamed one is sent chunked (or close-delimited to an HTTP/1.0 client).
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterable, Iterable, List, Mapping, Sequence, Tuple, Union

from ..errors import ValidationError
from .fields import check_status, header_problem

HeaderItems = Union[Mapping[str, str], Sequence[Tuple[str, str]], None]
"""Response headers given as a mapping or as (name, value) pairs."""


def _encode_headers(headers: HeaderItems) -> List[Tuple[bytes, bytes]]:
    """Return the headers as latin-1 byte pairs; raise ``ValueError`` for one that HTTP does
    not allow (a name that is not a token, a control character in a value)."""
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in items]
    for name, value in encoded:
        problem = header_problem(name, value)
        if problem is not None:
            raise ValueError(problem)
    return encoded


class Response:
    """A response with a body known in full: ``status_code``, ``headers``, ``body`` (bytes).

    ``content`` may be ``bytes`` or ``str`` (encoded as UTF-8; subclasses render other types).
    ``media_type`` sets ``Content-Type`` unless ``headers`` has one.

    Raises ``ValueError`` for a status outside 200-599 or a header HTTP does not allow. A
    ``Content-Length`` header that is not the body's length is refused when the response is
    sent (except in answer to HEAD, and with 304): the handler fails and the client gets 500.
    """

    media_type: str | None = None

    def __init__(
        self,
        content: Any = b"",
        status_code: int = 200,
        headers: HeaderItems = None,
        media_type: str | None = None,
    ) -> None:
        self.status_code = check_status(status_code)
        self.body: bytes = self.render(content)
        if media_type is not None:
            self.media_type = media_type
        self.headers: List[Tuple[bytes, bytes]] = _encode_headers(headers)

    def render(self, content: Any) -> bytes:
        """Return ``content`` as bytes; raises ``TypeError`` for a type it cannot render."""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode()
        if content is None:
            return b""
        raise TypeError(f"{type(self).__name__} cannot send a {type(content).__name__}; give bytes or str")

    def head_items(self) -> List[Tuple[bytes, bytes]]:
        """Return the headers to send: the given ones plus Content-Type and Content-Length."""
        headers = list(self.headers)
        names = {name.lower() for name, _ in headers}
        if self.media_type is not None and b"content-type" not in names:
            headers.append((b"content-type", self.media_type.encode("latin-1")))
        if b"content-length" not in names and self.status_code >= 200 and self.status_code not in (204, 304):
            headers.append((b"content-length", str(len(self.body)).encode()))
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, body={self.body[:40]!r})"


class PlainTextResponse(Response):
    """A ``text/plain; charset=utf-8`` response."""

    media_type = "text/plain; charset=utf-8"


class HTMLResponse(Response):
    """A ``text/html; charset=utf-8`` response."""

    media_type = "text/html; charset=utf-8"


class JSONResponse(Response):
    """A JSON response: ``content`` is any value ``json.dumps`` accepts."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


class StreamingResponse:
    """A response whose body is produced as it is sent: ``content`` is an async or plain
    iterable of ``bytes`` or ``str`` chunks. Sending waits while the client reads slowly.

    Raises ``ValueError`` for a status outside 200-599 or a header HTTP does not allow.
    """

    def __init__(
        self,
        content: AsyncIterable[Any] | Iterable[Any],
        status_code: int = 200,
        headers: HeaderItems = None,
        media_type: str | None = None,
    ) -> None:
        self.content = content
        self.status_code = check_status(status_code)
        self.media_type = media_type
        self.headers: List[Tuple[bytes, bytes]] = _encode_headers(headers)

    def head_items(self) -> List[Tuple[bytes, bytes]]:
        """Return the headers to send: the given ones plus Content-Type if known."""
        headers = list(self.headers)
        if self.media_type is not None and all(name.lower() != b"content-type" for name, _ in headers):
            headers.append((b"content-type", self.media_type.encode("latin-1")))
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code})"


AnyResponse = Union[Response, StreamingResponse]


def validation_error_body(error: ValidationError) -> bytes:
    """Return the JSON body of a 422 answer to data that does not validate, in FastAPI's shape:
    ``{"detail": [{"loc": ["body", ...], "msg": ..., "type": ...}]}`` (the body is where the
    event data of a request comes from)."""
    detail = [
        {"loc": ["body", *field["loc"]], "msg": field["msg"], "type": field["type"]} for field in error.errors()
    ]
    return json.dumps({"detail": detail}, ensure_ascii=False, separators=(",", ":")).encode()

def to_response(result: Any) -> AnyResponse:
    """Turn a handler's return value into a response.

    Raises ``TypeError`` for a value that is none of str, bytes, dict, list, None or a response.
    """
    if isinstance(result, (Response, StreamingResponse)):
        return result
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), media_type="application/octet-stream")
    if isinstance(result, (dict, list)):
        return JSONResponse(result)
    if result is None:
        return Response(status_code=204)
    raise TypeError(
        f"a handler returned a {type(result).__name__}; return str, bytes, dict, list, None or a Response"
    )

