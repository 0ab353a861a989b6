"""Listener processes for the fault tests that kill a consumer in the middle of an event.

Both sides of the exchange live here. A worker script (``tests/<broker>/_worker.py``) calls
:func:`announce_when_consuming` and prints one line per thing it does (:func:`block_forever`
is a handler that announces itself and never returns); the test starts it with
:class:`Workers`, which waits for that announcement, reads the worker's lines as they come
and kills every worker still running when the test ends.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, List, Type

from tiny_listener import Event

ROOT = Path(__file__).resolve().parents[1]
CONSUMING = "consuming"


def announce_when_consuming(app: Any) -> None:
    """Have ``app`` (a broker listener with ``wait_connected()``) print ``consuming`` once it
    consumes: the test may publish from then on."""

    async def announce_when_connected() -> None:
        async def announce() -> None:
            await app.wait_connected()
            print(CONSUMING, flush=True)

        app.spawn(announce())

    app.startup(announce_when_connected)


async def block_forever(event: Event) -> None:  # type: ignore[type-arg]
    """A handler that prints ``started <path>`` and never returns: the test kills the worker
    while it waits here."""
    print(f"started {event.path}", flush=True)
    await asyncio.Event().wait()


class Worker:
    """One worker process, its standard output read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def next_line(self, timeout: float = 30) -> str:
        """The next line the worker prints, stripped; raises TimeoutError after ``timeout`` s."""
        assert self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode().strip()

    async def kill(self) -> None:
        """SIGKILL the worker (no shutdown, no acknowledgement) and wait for it to end."""
        if self.process.returncode is None:
            self.process.kill()
        await asyncio.wait_for(self.process.wait(), 30)


class Workers:
    """Starts ``python -m MODULE ARGS...`` from the repository root; on leaving the ``async
    with`` block, kills the workers still running."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.started: List[Worker] = []

    async def start(self, *args: str) -> Worker:
        """A new worker, returned once it has printed ``consuming`` (AssertionError if it
        printed something else first, TimeoutError if nothing within 30 s)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        worker = Worker(process)
        self.started.append(worker)
        assert await worker.next_line() == CONSUMING
        return worker

    async def __aenter__(self) -> Workers:
        return self

    async def __aexit__(
        self,
        exc_type: Type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for worker in self.started:
            await worker.kill()
