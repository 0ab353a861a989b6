"""Accepting TCP connections with a connection limit, and calmly when out of file descriptors.

asyncio's ``loop.create_server`` accepts whatever arrives: a server cannot stop accepting at a
connection limit, and when the process runs out of file descriptors (``EMFILE``/``ENFILE``)
its accept loop logs a traceback per attempt ("socket.accept() out of system resource",
hundreds of thousands a minute under a flood) while the clients keep failing. An
:class:`Acceptor` owns its listening sockets and accepts with ``loop.sock_accept`` itself:

- at ``max_connections`` open connections it stops accepting: new clients wait in the
  kernel's listen backlog and the next one is accepted as soon as a connection closes;
- out of file descriptors (or kernel memory), it waits until a connection closes, or
  ``retry_interval`` seconds, and tries again;
- either condition is logged when it starts, then at most once per ``log_interval`` seconds
  however often it comes back (a server at its limit pauses at every new connection), and
  the return to normal after a logged pause once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any, Callable, Iterator, List, MutableSet, Set, Tuple, TypeVar

logger = logging.getLogger("tiny_listener")

# accept() errors that mean "the process or the system is out of something": wait, retry.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() errors about one connection only (it was reset before being accepted): go on.
CONNECTION_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EAGAIN})

T = TypeVar("T")


class OpenConnections(MutableSet[T]):
    """The open connections of a server (a set); :meth:`wait_for_room` waits until one is
    discarded. Connections add themselves when made and discard themselves when lost."""

    def __init__(self) -> None:
        self._items: Set[T] = set()
        self._room: asyncio.Event | None = None

    def add(self, item: T) -> None:
        self._items.add(item)

    def discard(self, item: T) -> None:
        if item in self._items:
            self._items.discard(item)
            if self._room is not None:
                self._room.set()

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    async def wait_for_room(self, timeout: float | None = None) -> None:
        """Return once a connection closed, or after ``timeout`` seconds."""
        if self._room is None:
            self._room = asyncio.Event()
        self._room.clear()
        try:
            await asyncio.wait_for(self._room.wait(), timeout)
        except asyncio.TimeoutError:
            pass


class Acceptor:
    """Listening sockets and the accept loop that feeds ``protocol_factory``; see the module
    docstring. ``name`` starts its log lines ("HTTP")."""

    retry_interval = 0.5
    log_interval = 10.0

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        connections: OpenConnections[Any],
        max_connections: int,
        name: str,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.protocol_factory = protocol_factory
        self.connections = connections
        self.max_connections = max_connections
        self.name = name
        self.sockets: List[socket.socket] = []
        self._pausing: str | None = None  # why accepting is paused, while it is
        self._paused_at = 0.0
        self._last_reported: str | None = None
        self._next_report = 0.0
        self._pause_reported = False

    async def bind(self, host: str | None, port: int, backlog: int) -> Tuple[str, int]:
        """Listen on every address ``host`` resolves to (all interfaces for ``None`` or
        ``""``), on ``port`` (0: a free one, the same for all); return the first address.

        Raises ``OSError`` if an address cannot be bound (in use...).
        """
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: Set[Tuple[int, Any]] = set()
        try:
            for family, kind, proto, _, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(self.sockets) > 1:
                    address = (address[0], self.sockets[0].getsockname()[1], *address[2:])
                try:
                    sock.bind(address)
                except OSError as exc:
                    # Name the address, as asyncio's create_server does: "in use" alone says little.
                    reason = (exc.strerror or str(exc)).lower()
                    message = f"error while attempting to bind on address {address!r}: {reason}"
                    raise OSError(exc.errno, message) from None
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            self.close()
            raise
        first = self.sockets[0].getsockname()
        return str(first[0]), int(first[1])

    def adopt(self, sock: socket.socket) -> Tuple[str, int]:
        """Accept on ``sock``, a listening socket already bound (``tiny-listener run --fd``,
        ``--workers``), instead of binding; return its address."""
        sock.setblocking(False)
        self.sockets.append(sock)
        address = sock.getsockname()
        return str(address[0]), int(address[1])

    async def serve(self) -> None:
        """Accept connections on every socket until cancelled."""
        if len(self.sockets) == 1:
            await self._accept_loop(self.sockets[0])
            return
        loop = asyncio.get_running_loop()
        loops = [loop.create_task(self._accept_loop(sock)) for sock in self.sockets]
        try:
            await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in loops:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in loops:
                task.cancel()
            await asyncio.wait(loops)

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        connections = self.connections
        while True:
            if len(connections) >= self.max_connections:
                self._paused(f"max_connections={self.max_connections} reached: new connections wait")
                await connections.wait_for_room()
                continue
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    self._paused(f"cannot accept connections: {exc.strerror or exc}; retrying as connections close")
                    await connections.wait_for_room(self.retry_interval)
                    continue
                if exc.errno in CONNECTION_GONE:
                    continue
                raise
            self._resumed()
            try:
                # On every loop, not on AbstractEventLoop before Python 3.10 (mypy --python-version 3.9).
                await loop.connect_accepted_socket(self.protocol_factory, conn)  # type: ignore[attr-defined,unused-ignore]
            except Exception:
                conn.close()
                logger.exception("%s: could not set up an accepted connection", self.name)

    def _paused(self, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        if self._pausing is None:
            self._paused_at = now
        self._pausing = reason
        # One line per log_interval while accepting keeps pausing, whatever the churn.
        if reason != self._last_reported or now >= self._next_report:
            logger.warning("%s: %s (%d open)", self.name, reason, len(self.connections))
            self._last_reported = reason
            self._next_report = now + self.log_interval
            self._pause_reported = True

    def _resumed(self) -> None:
        if self._pausing is not None:
            if self._pause_reported:
                paused_for = asyncio.get_running_loop().time() - self._paused_at
                logger.info("%s: accepting connections again after %.1fs", self.name, paused_for)
                self._pause_reported = False
            self._pausing = None

    def close(self) -> None:
        """Close the listening sockets: new connections are refused."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []
