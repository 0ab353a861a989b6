"""``HTTPTestClient``: real HTTP/1.1 requests to an app running in the test's own process.

The app runs as in production (startup hooks, ``listen()``, shutdown), bound to a free port
on 127.0.0.1, on the test's event loop; the client speaks HTTP/1.1 to it over the loopback
interface with h11 (extra ``http``), reusing one keep-alive connection while the server keeps
it open. Works with any listener that hosts an :class:`~tiny_listener.http.HTTPSource` (an
:class:`~tiny_listener.http.HTTPListener`, or a broker consumer that also serves health probes),
and with any listener that has ``host`` and ``port`` attributes and serves HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any, List, Mapping, Sequence, Tuple, Type, Union

from ..listener import Listener
from ..optional import require
from .client import TestClient
from .recorder import EventRecord

HeaderItems = Union[Mapping[str, str], Sequence[Tuple[str, str]]]

_READ_SIZE = 65536


@dataclass(frozen=True)
class HTTPResponse:
    """A response: ``status_code``, ``headers`` as (lower-case name, value) pairs in the order
    received, and the whole ``body``."""

    status_code: int
    headers: List[Tuple[str, str]]
    body: bytes
    reason: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (any case), or ``default``."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), default)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body decoded as JSON; raises ``ValueError`` if it is not JSON."""
        return jsonlib.loads(self.body)


class HTTPTestClient:
    """``async with HTTPTestClient(app) as http: response = await http.get("/user/bob")``.

    Entering runs the app (startup hooks, then ``listen()`` on ``host`` and a free port) and
    returns once it accepts connections; exiting shuts it down as production does. The app's
    ``host`` and ``port`` are put back afterwards. Every event is recorded in :attr:`events`.
    ``timeout`` bounds connecting and each request.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        app: Listener[Any],
        *,
        host: str = "127.0.0.1",
        shutdown_timeout: float | None = None,
        timeout: float = 30.0,
    ) -> None:
        # The HTTP server to reach: the first HTTP source the app hosts, else the app itself.
        self._server: Any = next((source for source in app.sources if source.kind == "http"), app)
        if not (hasattr(self._server, "host") and hasattr(self._server, "port")):
            raise TypeError(
                f"{type(app).__name__} hosts no HTTP source and has no host/port attributes: HTTPTestClient cannot"
                " reach it"
            )
        self._server_address: Tuple[Any, Any] | None = None
        self._h11: Any = require("h11", extra="http")
        self.client = TestClient(app, shutdown_timeout=shutdown_timeout, listen=True)
        self.host = host
        self.timeout = timeout
        self.port = 0
        self._connection: _Connection | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def app(self) -> Listener[Any]:
        return self.client.app

    @property
    def events(self) -> List[EventRecord]:
        """Every event the app handled while the client ran, in the order they ended."""
        return self.client.events

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> HTTPTestClient:
        """Start the app and wait until it serves; raises what a startup hook or ``listen()``
        raised, or ``asyncio.TimeoutError`` if it does not serve within ``timeout``."""
        # A server that reports the port it bound (an HTTP source) gets port 0: no race for it.
        server = self._server
        reports_port = server is not self.app or callable(getattr(self.app, "wait_until_serving", None))
        self._lock = asyncio.Lock()  # made here, on the test's loop (Python 3.9 binds it at creation)
        port = 0 if reports_port else _free_port(self.host)
        if server is self.app:
            self.client._shadow("host", self.host)
            self.client._shadow("port", port)
        else:
            self._server_address = (server.host, server.port)
            server.host, server.port = self.host, port
        try:
            await self.client.__aenter__()
        except BaseException:
            self.client._restore()
            self._restore_server_address()
            raise
        try:
            await asyncio.wait_for(self._until_serving(reports_port), self.timeout)
        except BaseException as failure:
            try:
                await self.client.__aexit__(None, None, None)
            except BaseException as again:
                if again is not failure:  # the exit re-raises listen()'s error: report it once
                    raise
            raise
        self.port = int(server.port)
        return self

    def _restore_server_address(self) -> None:
        if self._server_address is not None:
            self._server.host, self._server.port = self._server_address
            self._server_address = None

    async def _until_serving(self, reports_port: bool) -> None:
        stopped = asyncio.ensure_future(self.client.wait_stopped())
        serving = asyncio.ensure_future(
            self._wait_serving() if reports_port else self._until_connectable()
        )
        try:
            await asyncio.wait([stopped, serving], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopped, serving):
                task.cancel()
            await asyncio.wait([stopped, serving])
        if not serving.cancelled() and serving.exception() is None:
            if stopped.done() and not stopped.cancelled():
                stopped.result()  # main() ended in the same loop iteration: raise why
            return
        if not stopped.cancelled():
            stopped.result()  # raises the error of listen() or a startup hook
        raise RuntimeError(f"{self.app!r} stopped before it served on {self.host}")

    async def _wait_serving(self) -> None:
        # An HTTP source says when it is ready; a listener that is its own server, when it serves.
        wait = "wait_until_serving" if self._server is self.app else "wait_ready"
        await getattr(self._server, wait)()

    async def _until_connectable(self) -> None:
        # This listener has no "serving" signal: try to connect until it accepts.
        port = int(self._server.port)
        delay = 0.005
        while True:
            try:
                _, writer = await asyncio.open_connection(self.host, port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def __aexit__(
        self, exc_type: Type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Shut the app down (requests in flight are answered, as in production), then close
        the client connection."""
        try:
            await self.client.__aexit__(exc_type, exc, tb)
        finally:
            self._restore_server_address()
            if self._connection is not None:
                await self._connection.close()
                self._connection = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: HeaderItems | None = None,
        body: bytes = b"",
        json: Any = None,
    ) -> HTTPResponse:
        """Send one request and return the whole response. ``json`` (if given) is sent as the
        body with ``content-type: application/json``.

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds, ``ConnectionError`` if the
        server closes the connection without a complete response, or h11's
        ``RemoteProtocolError`` for a response that is not valid HTTP/1.1.
        """
        items = list(headers.items() if isinstance(headers, Mapping) else headers or [])
        if json is not None:
            body = jsonlib.dumps(json).encode()
            items.append(("content-type", "application/json"))
        names = {name.lower() for name, _ in items}
        if "host" not in names:
            items.insert(0, ("host", f"{self.host}:{self.port}"))
        if "content-length" not in names and "transfer-encoding" not in names:
            items.append(("content-length", str(len(body))))
        if self._lock is None:
            raise RuntimeError("the HTTPTestClient is not running: use `async with HTTPTestClient(app) as http:`")
        async with self._lock:
            return await asyncio.wait_for(self._exchange(method.upper(), path, items, body), self.timeout)

    async def _exchange(self, method: str, path: str, headers: List[Tuple[str, str]], body: bytes) -> HTTPResponse:
        if self._connection is None or not self._connection.reusable:
            if self._connection is not None:
                await self._connection.close()
            self._connection = await _Connection.open(self._h11, self.host, self.port)
        return await self._connection.exchange(method, path, headers, body)

    async def get(self, path: str, *, headers: HeaderItems | None = None) -> HTTPResponse:
        """``request("GET", path)``."""
        return await self.request("GET", path, headers=headers)

    async def head(self, path: str, *, headers: HeaderItems | None = None) -> HTTPResponse:
        """``request("HEAD", path)``."""
        return await self.request("HEAD", path, headers=headers)

    async def post(
        self, path: str, *, headers: HeaderItems | None = None, body: bytes = b"", json: Any = None
    ) -> HTTPResponse:
        """``request("POST", path, ...)``."""
        return await self.request("POST", path, headers=headers, body=body, json=json)

    async def put(
        self, path: str, *, headers: HeaderItems | None = None, body: bytes = b"", json: Any = None
    ) -> HTTPResponse:
        """``request("PUT", path, ...)``."""
        return await self.request("PUT", path, headers=headers, body=body, json=json)

    async def delete(self, path: str, *, headers: HeaderItems | None = None) -> HTTPResponse:
        """``request("DELETE", path)``."""
        return await self.request("DELETE", path, headers=headers)


class _Connection:
    """One client connection: an h11 client state machine over an asyncio stream."""

    def __init__(self, h11: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.h11 = h11
        self.conn = h11.Connection(h11.CLIENT)
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, h11: Any, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(h11, reader, writer)

    @property
    def reusable(self) -> bool:
        """True if the last exchange left the connection ready for another request."""
        h11 = self.h11
        return bool(self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE)

    async def exchange(self, method: str, path: str, headers: List[Tuple[str, str]], body: bytes) -> HTTPResponse:
        h11 = self.h11
        conn = self.conn
        data = conn.send(h11.Request(method=method, target=path, headers=headers))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        self.writer.write(data)
        await self.writer.drain()

        head: Any = None
        chunks: List[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                # b"" at the end of the stream: h11 then reports ConnectionClosed or an error.
                conn.receive_data(await self.reader.read(_READ_SIZE))
            elif isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue: the final response follows
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError(f"the server closed the connection before answering {method} {path}")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        headers_out = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers]
        return HTTPResponse(
            status_code=int(head.status_code),
            headers=headers_out,
            body=b"".join(chunks),
            reason=head.reason.decode("latin-1"),
        )

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass  # the server closed it first


def _free_port(host: str) -> int:
    """Return a port free on ``host`` a moment ago, for listeners that cannot bind port 0."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
