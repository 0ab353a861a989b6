"""``tiny-listener run --workers N``: N processes of one app, kept running by a supervisor.

:class:`RestartPolicy` decides, from times alone, when a worker that exited is started again
and when restarting is pointless; :class:`Supervisor` runs the processes, forwards the stop
signal and follows that policy. Workers that accept connections share one listening socket
bound by the supervisor (:func:`bind_socket`), as gunicorn and ``uvicorn --workers`` do: the
kernel queues new connections on it, so a connection made while a worker restarts waits for
another worker instead of being refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from typing import Dict, Sequence

from .backoff import retry_delay

logger = logging.getLogger("tiny_listener.workers")

# Set by the supervisor in each worker's environment: the read end of a pipe that only the
# supervisor holds open for writing. End of file on it means the supervisor is gone.
SUPERVISOR_FD_ENV = "TINY_LISTENER_SUPERVISOR_FD"


@dataclass(frozen=True)
class Restart:
    """Start the worker again after ``delay`` seconds; it failed ``failures`` times in a row."""

    delay: float
    failures: int


@dataclass(frozen=True)
class GiveUp:
    """Stop every worker: all of them keep failing (this one ``failures`` times in a row)."""

    failures: int


class RestartPolicy:
    """What follows the exit of a worker that nobody asked to stop. Every rule is here:

    1. A run that lasted ``healthy_after`` seconds or more was healthy: the worker's count of
       failures in a row starts again from zero. Every exit counts as one failure more.
    2. When every worker has failed ``give_up_after`` times in a row, and none of them is now
       running for ``healthy_after`` seconds already, restarting does not help (a module that
       no longer imports, a bad setting): give up.
    3. Otherwise restart after ``first_delay`` seconds, doubled for each failure in a row after
       the first, up to ``max_delay``.

    Workers are numbered from 1; times are seconds on any monotonic clock.
    """

    def __init__(
        self,
        workers: int,
        *,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        healthy_after: float = 10.0,
        give_up_after: int = 5,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if give_up_after < 1:
            raise ValueError(f"give_up_after must be at least 1, not {give_up_after}")
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.healthy_after = healthy_after
        self.give_up_after = give_up_after
        self._started_at: Dict[int, float | None] = dict.fromkeys(range(1, workers + 1))
        self._failures: Dict[int, int] = dict.fromkeys(range(1, workers + 1), 0)

    def started(self, worker: int, now: float) -> None:
        """Worker ``worker`` started at ``now``; raises ``ValueError`` if it is running."""
        if self._started_at[worker] is not None:
            raise ValueError(f"worker {worker} is already running")
        self._started_at[worker] = now

    def exited(self, worker: int, now: float) -> Restart | GiveUp:
        """Worker ``worker`` exited at ``now`` on its own; return what to do about it.

        Raises ``ValueError`` if it was not running."""
        started_at = self._started_at[worker]
        if started_at is None:
            raise ValueError(f"worker {worker} is not running")
        self._started_at[worker] = None
        if now - started_at >= self.healthy_after:
            self._failures[worker] = 0
        self._failures[worker] += 1
        failures = self._failures[worker]
        if all(self._failing(other, now) for other in self._failures):
            return GiveUp(failures)
        return Restart(retry_delay(failures, self.first_delay, self.max_delay), failures)

    def _failing(self, worker: int, now: float) -> bool:
        started_at = self._started_at[worker]
        if started_at is not None and now - started_at >= self.healthy_after:
            return False
        return self._failures[worker] >= self.give_up_after


def describe_exit(returncode: int) -> str:
    """``exited with status 1`` or ``killed by SIGKILL``, from a ``Popen.returncode``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


class Supervisor:
    """Run ``command`` as ``workers`` processes until SIGINT or SIGTERM.

    Each worker runs in its own session, so that a Ctrl-C in the terminal reaches the
    supervisor only; the supervisor sends each worker SIGTERM (again on a second signal, which
    makes the workers skip their wait for in-flight events), waits ``stop_timeout`` seconds
    for all of them, then kills those still running. A worker that exits on its own is
    restarted as ``policy`` says. Every worker gets the file descriptors ``pass_fds`` (the
    shared socket) and stops by itself if the supervisor dies (see :func:`stop_with_supervisor`).
    """

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        stop_timeout: float,
        pass_fds: Sequence[int] = (),
        policy: RestartPolicy | None = None,
    ) -> None:
        self.command = list(command)
        self.workers = workers
        self.stop_timeout = stop_timeout
        self.pass_fds = tuple(pass_fds)
        self.policy = policy or RestartPolicy(workers)
        self._running: Dict[int, asyncio.subprocess.Process] = {}
        self._stop: asyncio.Event | None = None
        self._clean = True

    def run(self) -> int:
        """Run until stopped; return the exit status: 0 if every worker stopped by itself when
        asked, 1 if one had to be killed, failed to stop, or the supervisor gave up."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        watch_fd, held_fd = os.pipe()  # both ends stay out of the workers but watch_fd
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            slots = [
                loop.create_task(self._keep_running(worker, watch_fd), name=f"worker {worker}")
                for worker in range(1, self.workers + 1)
            ]
            for slot in slots:
                slot.add_done_callback(self._on_slot_done)
            await self._stop.wait()
            await asyncio.wait(slots, timeout=self.stop_timeout)
            for worker, process in list(self._running.items()):
                logger.warning(
                    "worker %d (pid %d) still running %.1fs after the stop request: killing it",
                    worker, process.pid, self.stop_timeout,
                )
                self._clean = False
                process.kill()
            await asyncio.wait(slots)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            os.close(watch_fd)
            os.close(held_fd)
        return 0 if self._clean else 1

    async def _keep_running(self, worker: int, watch_fd: int) -> None:
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            self.policy.started(worker, loop.time())
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.command,
                    stdin=subprocess.DEVNULL,
                    pass_fds=(*self.pass_fds, watch_fd),
                    start_new_session=True,
                    env={**os.environ, SUPERVISOR_FD_ENV: str(watch_fd)},
                )
            except OSError as exc:
                what = f"could not start ({exc})"
            else:
                self._running[worker] = process
                logger.info("worker %d started (pid %d)", worker, process.pid)
                if self._stop.is_set():  # the stop request came while it was starting
                    process.terminate()
                returncode = await process.wait()
                del self._running[worker]
                if self._stop.is_set():
                    self._stopped(worker, process.pid, returncode)
                    return
                what = f"(pid {process.pid}) {describe_exit(returncode)}"
            decision = self.policy.exited(worker, loop.time())
            if isinstance(decision, GiveUp):
                logger.error(
                    "worker %d %s: every worker failed %d times in a row, giving up",
                    worker, what, self.policy.give_up_after,
                )
                self._request_stop(clean=False)
                return
            logger.warning(
                "worker %d %s: restarting it in %.1fs (failure %d in a row)",
                worker, what, decision.delay, decision.failures,
            )
            try:
                await asyncio.wait_for(self._stop.wait(), decision.delay)
            except asyncio.TimeoutError:
                pass

    def _stopped(self, worker: int, pid: int, returncode: int) -> None:
        if returncode in (0, -signal.SIGTERM):
            logger.info("worker %d (pid %d) stopped", worker, pid)
        else:
            self._clean = False
            logger.warning("worker %d (pid %d) %s while stopping", worker, pid, describe_exit(returncode))

    def _on_signal(self, signum: int) -> None:
        assert self._stop is not None
        if self._stop.is_set():
            logger.warning("second signal %d: the workers skip their wait for in-flight events", signum)
        else:
            logger.info("signal %d received: stopping %d worker(s) (send it again to force)", signum, self.workers)
        self._request_stop(clean=True)

    def _request_stop(self, *, clean: bool) -> None:
        assert self._stop is not None
        self._clean = self._clean and clean
        self._stop.set()
        for process in self._running.values():
            if process.returncode is None:
                process.terminate()

    def _on_slot_done(self, slot: asyncio.Task[None]) -> None:
        if not slot.cancelled() and slot.exception() is not None:
            logger.error("%s: supervising it failed", slot.get_name(), exc_info=slot.exception())
            self._request_stop(clean=False)


def stop_with_supervisor() -> None:
    """In a worker started by a :class:`Supervisor`: send this process SIGTERM (a graceful
    stop, as the supervisor would ask for) if the supervisor dies. Does nothing elsewhere."""
    value = os.environ.pop(SUPERVISOR_FD_ENV, None)
    if value is None:
        return
    watch = threading.Thread(
        target=_stop_at_end_of_file, args=(int(value), os.getppid()), name="supervisor watch", daemon=True
    )
    watch.start()


def _stop_at_end_of_file(fd: int, supervisor_pid: int) -> None:
    try:
        while os.read(fd, 1):  # the supervisor never writes: read returns b"" once it is gone
            pass
    except OSError:
        return
    logger.warning("the supervisor (pid %d) is gone: stopping", supervisor_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """Return a TCP socket listening on ``host``:``port`` (``port`` 0: a free one), to share
    with workers. Raises ``OSError`` naming the address if it cannot be bound."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: {reason}") from None
    return sock


def inherited_socket(fd: int) -> socket.socket:
    """Return the listening TCP socket open as file descriptor ``fd`` (given by a supervisor,
    systemd's socket activation...). Raises ``OSError`` if ``fd`` is not open, ``ValueError``
    if it is not a TCP socket."""
    sock = socket.socket(fileno=fd)
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ValueError(f"file descriptor {fd} is not a TCP socket")
    return sock
