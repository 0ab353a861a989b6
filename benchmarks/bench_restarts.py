"""Broker restarts under load: lost messages, duplicates and time to recover, per broker.

For each broker kind this starts a private broker server on a free port (never the shared
ones), two worker processes (``tiny-listener run bench_restart_app:app``, a module this script
writes into a temp dir) that append every handled message id to a file of their own, and
publishes ``--events`` messages at a steady ``--rate``. When half of them are published it
restarts the broker (``--signal``, then the same command on the same port and data dir),
keeps publishing (retrying what the broker did not confirm), then waits until every message
was handled or ``--drain-timeout`` passes, and a little longer for late redeliveries.

Brokers (``--broker``, repeatable; default all, one after another):

- ``redis``: ``redis-server --appendonly yes`` (SIGKILL), ``RedisStreamListener``, one group.
- ``nats``: ``nats-server -js -sd DIR`` (SIGKILL), ``NATSListener``, one durable consumer.
- ``mqtt-plain``: ``mosquitto`` with persistence (SIGTERM: it saves its sessions then),
  QoS 1, clean sessions (no ``client_id``): each worker subscribes on its own, so each gets
  every message.
- ``mqtt-persistent``: the same with persistent sessions (a ``client_id`` per worker).
- ``mqtt-shared``: persistent sessions sharing ``$share/bench/...`` (``shared_group``): each
  message goes to one worker.
- ``rabbitmq``: a private ``rabbitmq-server`` node (SIGKILL), ``AMQPListener``, one durable
  queue, persistent messages. If no private node starts within ``--rabbitmq-start-timeout``,
  the shared RabbitMQ on 5672 is used and the workers' connections are closed with
  ``rabbitmqctl close_connection`` instead of a restart (the report says so).

Per round it prints: published (confirmed by the broker), deliveries expected (published x
workers for the fan-out MQTT kinds), handled (unique), lost, duplicates, the bound that should
hold on duplicates (workers x ``max_in_flight``), the time the broker was down, and the time to
recover: from the broker being back (its port open) to the first message handled after it, and
to the first handled message that was published after it. ``publisher resends`` counts the
messages published again because the broker did not confirm them (such a message may have
been stored twice: a duplicate that is the publisher's, not the listener's).

    python benchmarks/bench_restarts.py [--broker redis] [--events 5000] [--rounds 2]

It ends every process it starts (process groups, whatever happens) and removes its temp dirs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

HERE = Path(__file__).resolve().parent
BROKERS = ("redis", "nats", "mqtt-plain", "mqtt-persistent", "mqtt-shared", "rabbitmq")
DEFAULT_SIGNAL = {"redis": "kill", "nats": "kill", "mqtt": "term", "rabbitmq": "kill"}
SHARED_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
SHARED_PORTS = {6379, 5672, 1883, 4222, 5432, 25672, 4369}

# The app every worker runs, configured through the environment. It appends "<id> <time>"
# for every handled message to its own file (flushed at once, so a killed worker loses
# nothing it reported), and "ready <time>" once it consumes.
APP_MODULE = '''
"""A worker of benchmarks/bench_restarts.py (written by it; run with tiny-listener)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from tiny_listener import Param

KIND = os.environ["TLB_KIND"]
URL = os.environ["TLB_URL"]
NAME = os.environ["TLB_NAME"]
WORKER = os.environ["TLB_WORKER"]
MAX_IN_FLIGHT = int(os.environ["TLB_MAX_IN_FLIGHT"])
WORK = float(os.environ["TLB_WORK"])
OUT = open(os.environ["TLB_OUT"], "a", buffering=1)  # noqa: SIM115 - open for the process

app: Any
if KIND == "redis":
    from tiny_listener.redis import RedisStreamListener

    app = RedisStreamListener(URL, streams=[NAME], group="bench", max_in_flight=MAX_IN_FLIGHT,
                              claim_idle=float(os.environ["TLB_REDELIVERY"]))
    ROUTE = "job:{n:int}"
elif KIND == "nats":
    from tiny_listener.nats import NATSListener

    app = NATSListener(URL, stream=NAME, durable="bench", max_in_flight=MAX_IN_FLIGHT,
                       ack_wait=float(os.environ["TLB_REDELIVERY"]))
    ROUTE = NAME + ".job.{n:int}"
elif KIND == "rabbitmq":
    from tiny_listener.amqp import AMQPListener

    app = AMQPListener(URL, queue=NAME, max_in_flight=MAX_IN_FLIGHT,
                       connection_name=f"{NAME}-w{WORKER}")
    ROUTE = "job:{n:int}"
else:
    from tiny_listener.mqtt import MQTTListener

    options: dict[str, Any] = {}
    if KIND in ("mqtt-persistent", "mqtt-shared"):
        options["client_id"] = f"{NAME}-w{WORKER}"
    if KIND == "mqtt-shared":
        options["shared_group"] = "bench"
    app = MQTTListener(URL, qos=1, max_in_flight=MAX_IN_FLIGHT, **options)
    ROUTE = NAME + "/job/{n:int}"


@app.on_event(ROUTE)
async def job(n: Param) -> None:
    await asyncio.sleep(WORK)
    OUT.write(f"{n} {time.time():.6f}\\n")


class ReadyWhenReading(logging.Handler):
    """For a Redis listener without wait_connected() (before its port to the broker flow):
    its INFO line "consumer ... reading ..." says it consumes."""

    def emit(self, record: logging.LogRecord) -> None:
        if " reading " in record.getMessage():
            OUT.write(f"ready {time.time():.6f}\\n")
            logging.getLogger("tiny_listener.redis").removeHandler(self)


@app.startup
async def announce_when_consuming() -> None:
    async def announce() -> None:
        await app.wait_connected()
        OUT.write(f"ready {time.time():.6f}\\n")

    if hasattr(app, "wait_connected"):
        app.spawn(announce())
    else:
        logging.getLogger("tiny_listener.redis").addHandler(ReadyWhenReading())
'''


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in SHARED_PORTS:
            return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.02)  # a port of a process we do not parent: no event to wait on


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def end_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout: float = 15) -> None:
    """Send ``sig`` to the process group of ``process`` (started in a session of its own) and
    wait until no process of the group is left (the Erlang VM under rabbitmq-server's shell
    script too: a dying VM keeps its port open for a while); SIGKILL the group if some are
    left after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None and not group_alive(process.pid):
            return
        time.sleep(0.02)  # processes we do not all parent: no event to wait on
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout)
    while group_alive(process.pid):
        time.sleep(0.02)


def start_in_group(command: List[str], log: Path, env: Dict[str, str] | None = None,
                   cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)


# ---------------------------------------------------------------------------------- the brokers


class BrokerServer:
    """A private broker server on a free port, with its data in ``workdir``; restartable."""

    name = ""
    start_timeout = 30.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "broker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.note = ""

    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> Tuple[List[str], Dict[str, str] | None]:
        raise NotImplementedError

    async def start(self) -> float:
        """Start the server and return the time (``time.time()``) its port opened."""
        command, env = self.command()
        self.process = start_in_group(command, self.log, env, cwd=self.workdir)
        deadline = time.monotonic() + self.start_timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not open port {self.port} in {self.start_timeout:.0f}s")
            await asyncio.sleep(0.02)  # a process we started gives no event to await
        return time.time()

    async def stop(self, sig: int) -> None:
        if self.process is not None:
            process, self.process = self.process, None
            await asyncio.get_running_loop().run_in_executor(None, end_group, process, sig, 60)
        await asyncio.get_running_loop().run_in_executor(None, wait_port_closed, self.port, 30)

    def close(self) -> None:
        if self.process is not None:
            end_group(self.process)
            self.process = None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


class RedisServer(BrokerServer):
    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> Tuple[List[str], Dict[str, str] | None]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--dir", str(self.workdir)], None


class NatsServer(BrokerServer):
    name = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> Tuple[List[str], Dict[str, str] | None]:
        return ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port),
                "-sd", str(self.workdir / "jetstream")], None


class MosquittoServer(BrokerServer):
    name = "mosquitto"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> Tuple[List[str], Dict[str, str] | None]:
        config = self.workdir / "mosquitto.conf"
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"user {user}\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            # The default (1000 per client) would drop messages published while a worker is
            # away for longer than 4 s at 250/s: that is a broker setting, not what is measured.
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
        )
        return ["mosquitto", "-c", str(config)], None


def rabbitmq_server_script() -> str | None:
    """The rabbitmq-server script itself (the /usr/sbin wrapper would switch to user rabbitmq,
    who cannot write our temp dir)."""
    found = sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server"))
    if found:
        return str(found[-1])
    return shutil.which("rabbitmq-server")


class RabbitMQServer(BrokerServer):
    """A private RabbitMQ node: its own node name, ports, Mnesia dir, logs, config, cookie."""

    name = "rabbitmq-server"
    start_timeout = 120.0

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.dist_port = free_port()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def command(self) -> Tuple[List[str], Dict[str, str] | None]:
        script = rabbitmq_server_script()
        if script is None:
            raise RuntimeError("rabbitmq-server is not installed")
        (self.workdir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        env = {
            **os.environ,
            "HOME": str(self.workdir),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"tlbench{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        return [script], env


class SharedRabbitMQ(BrokerServer):
    """The fallback: the shared RabbitMQ on 5672, never stopped. A "restart" closes the
    workers' connections (``rabbitmqctl close_connection``); "back" is when that returned."""

    name = "shared RabbitMQ (connections closed, not restarted)"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = 5672
        self.connection_prefix = ""
        self.closed = 0

    @property
    def url(self) -> str:
        return SHARED_RABBITMQ_URL

    async def start(self) -> float:
        return time.time()

    async def stop(self, sig: int) -> None:
        listing = await rabbitmqctl("list_connections", "pid", "client_properties", "--no-table-headers")
        pids = [line.split()[0] for line in listing.splitlines() if self.connection_prefix in line]
        for pid in pids:
            await rabbitmqctl("close_connection", pid, "bench_restarts: broker restart stand-in")
        self.closed = len(pids)

    def close(self) -> None:
        pass


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode()


def server_for(kind: str, workdir: Path) -> BrokerServer:
    if kind == "redis":
        return RedisServer(workdir)
    if kind == "nats":
        return NatsServer(workdir)
    if kind.startswith("mqtt"):
        return MosquittoServer(workdir)
    return RabbitMQServer(workdir)


# ---------------------------------------------------------------------------------- publishers


class Publisher:
    """Publishes one message at a time and returns once the broker confirmed it; raises
    whatever the client raises when it cannot (then :meth:`reset` and try again)."""

    def __init__(self, kind: str, url: str, name: str) -> None:
        self.kind = kind
        self.url = url
        self.name = name
        self.client: Any = None
        self.exit: contextlib.AsyncExitStack | None = None

    async def connect(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            if self.kind == "redis":
                import redis.asyncio as redis_asyncio

                from tiny_listener.redis import RedisPublisher

                client = redis_asyncio.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
                stack.push_async_callback(client.aclose)
                await client.ping()
                self.client = RedisPublisher(client=client)
            elif self.kind == "nats":
                import nats

                nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=1)
                stack.push_async_callback(nc.close)
                self.client = nc.jetstream(timeout=1)
            elif self.kind == "rabbitmq":
                import aio_pika

                connection = await aio_pika.connect(self.url, timeout=2)
                stack.push_async_callback(connection.close)
                self.client = await connection.channel(publisher_confirms=True)
            else:
                import aiomqtt

                host, port = self.url.rsplit("//", 1)[1].split(":")
                self.client = await stack.enter_async_context(aiomqtt.Client(host, int(port), timeout=1))
        except BaseException:
            await stack.aclose()
            raise
        self.exit = stack

    async def reset(self) -> None:
        stack, self.exit, self.client = self.exit, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stack.aclose(), 5)

    async def publish(self, n: int) -> None:
        if self.client is None:
            await self.connect()
        if self.kind == "redis":
            await self.client.publish(self.name, f"job:{n}", {})
        elif self.kind == "nats":
            await self.client.publish(f"{self.name}.job.{n}", b"{}")
        elif self.kind == "rabbitmq":
            import aio_pika

            message = aio_pika.Message(b"{}", headers={"x-event-path": f"job:{n}"},
                                       delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await self.client.default_exchange.publish(message, routing_key=self.name, timeout=2)
        else:
            await self.client.publish(f"{self.name}/job/{n}", b"{}", qos=1, timeout=1)


# ---------------------------------------------------------------------------------- one round


@dataclass
class Round:
    kind: str
    published: int = 0
    expected: int = 0
    handled: int = 0
    lost: int = 0
    duplicates: int = 0
    bound: int = 0
    resends: int = 0
    resent_duplicates: int = 0
    down_s: float = 0.0
    recover_s: float | None = None
    publisher_back_s: float | None = None
    new_flow_s: float | None = None
    round_s: float = 0.0
    note: str = ""
    lost_when: str = ""
    per_worker: List[int] = field(default_factory=list)


def read_worker_file(path: Path) -> Tuple[List[Tuple[int, float]], float | None]:
    """The (id, time) lines of a worker's file, and when it said it was ready."""
    handled: List[Tuple[int, float]] = []
    ready = None
    try:
        text = path.read_text()
    except FileNotFoundError:
        return handled, ready
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue  # a line being written
        if parts[0] == "ready":
            ready = ready or float(parts[1])
        else:
            handled.append((int(parts[0]), float(parts[1])))
    return handled, ready


def fan_out(kind: str) -> bool:
    """Whether each worker gets every message (MQTT subscriptions that are not shared)."""
    return kind in ("mqtt-plain", "mqtt-persistent")


async def run_round(kind: str, server: BrokerServer, args: argparse.Namespace, workdir: Path) -> Round:
    started = time.monotonic()
    result = Round(kind)
    name = f"tlb{uuid.uuid4().hex[:8]}"
    if isinstance(server, SharedRabbitMQ):
        server.connection_prefix = name
        result.note = "shared broker, connections closed instead of a restart"
    redelivery = {"redis": args.redis_claim_idle, "nats": args.nats_ack_wait}.get(kind, 0.0)
    outs = [workdir / f"{name}-worker{i}.txt" for i in range(args.workers)]
    workers: List[subprocess.Popen[bytes]] = []
    publisher = Publisher(kind, server.url, name)
    restart_task: asyncio.Task[Tuple[float, float]] | None = None
    try:
        for i, out in enumerate(outs):
            env = {**os.environ, "TLB_KIND": kind, "TLB_URL": server.url, "TLB_NAME": name, "TLB_WORKER": str(i),
                   "TLB_MAX_IN_FLIGHT": str(args.max_in_flight), "TLB_WORK": str(args.work),
                   "TLB_REDELIVERY": str(redelivery), "TLB_OUT": str(out)}
            command = [args.tiny_listener, "run", "--app-dir", str(workdir), "--log-level", "info",
                       "bench_restart_app:app"]
            workers.append(start_in_group(command, workdir / f"{name}-worker{i}.log", env))
            # One after the other: the first creates the stream/queue/consumer.
            await until(lambda out=out: read_worker_file(out)[1] is not None, 60, f"worker {i} consuming",
                        workers)

        sent_at: Dict[int, float] = {}  # when the broker confirmed it
        first_try: Dict[int, float] = {}  # when it was first sent
        resent: Set[int] = set()
        half = args.events // 2
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        for n in range(args.events):
            if n == half:
                restart_task = asyncio.ensure_future(restart(server, args.signal_for(kind)))
            attempts = 0
            first_try[n] = time.time()
            while True:
                try:
                    await asyncio.wait_for(publisher.publish(n), 10)
                    break
                except Exception:  # the broker is away: whatever the client raised, try again
                    if restart_task is not None and restart_task.done() and restart_task.exception():
                        raise RuntimeError("the broker did not come back") from restart_task.exception()
                    attempts += 1
                    await publisher.reset()
                    await asyncio.sleep(0.05)
                    next_at = time.monotonic()  # steady rate from where we are, no burst
            if attempts:
                resent.add(n)
            sent_at[n] = time.time()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        assert restart_task is not None
        down_at, back_at = await restart_task
        if isinstance(server, SharedRabbitMQ):
            result.note += f" ({server.closed} closed)"
        result.down_s = back_at - down_at
        result.published = len(sent_at)
        result.resends = len(resent)
        copies = args.workers if fan_out(kind) else 1
        result.expected = result.published * copies

        def all_handled() -> bool:
            if fan_out(kind):
                return all(set(range(args.events)) <= {n for n, _ in read_worker_file(out)[0]} for out in outs)
            seen: Set[int] = set()
            for out in outs:
                seen.update(n for n, _ in read_worker_file(out)[0])
            return len(seen) >= args.events

        with contextlib.suppress(TimeoutError):
            await until(all_handled, args.drain_timeout, "every message handled", [])
        # Late redeliveries (an acknowledgement lost with the connection) come after the
        # broker's redelivery delay: wait for them to count them.
        await asyncio.sleep(args.settle + redelivery)

        records = [read_worker_file(out)[0] for out in outs]
        result.per_worker = [len(r) for r in records]
        groups = records if fan_out(kind) else [[item for r in records for item in r]]
        handled_unique = 0
        duplicates = 0
        lost_ids: Set[int] = set()
        for group in groups:
            ids = [n for n, _ in group]
            unique = set(ids)
            handled_unique += len(unique & set(sent_at))
            duplicates += len(ids) - len(unique)
            lost_ids |= set(sent_at) - unique
            result.resent_duplicates += sum(ids.count(n) - 1 for n in resent & unique)
        if lost_ids:
            published = sorted(sent_at[n] - back_at for n in lost_ids)
            result.lost_when = f"published {published[0]:+.2f} s to {published[-1]:+.2f} s from the broker being back"
        result.handled = handled_unique
        result.lost = result.expected - handled_unique
        result.duplicates = duplicates
        result.bound = args.workers * args.max_in_flight
        after = [t for r in records for _, t in r if t >= back_at]
        result.recover_s = min(after) - back_at if after else None
        result.publisher_back_s = min((t for t in sent_at.values() if t > back_at), default=back_at) - back_at
        # Not a message confirmed after the restart but sent before it (the publisher's resend
        # of one the broker delivered and could not confirm): one first sent after it.
        new = [t for r in records for n, t in r if first_try.get(n, 0) > back_at]
        result.new_flow_s = min(new) - back_at if new else None
    finally:
        if restart_task is not None and not restart_task.done():
            restart_task.cancel()
            await asyncio.wait([restart_task])
        await publisher.reset()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, end_group, w, signal.SIGTERM, 20) for w in workers))
        if isinstance(server, SharedRabbitMQ):
            await delete_shared_queues(name)
    result.round_s = time.monotonic() - started
    return result


async def restart(server: BrokerServer, sig: int) -> Tuple[float, float]:
    down_at = time.time()
    await server.stop(sig)
    back_at = await server.start()
    return down_at, back_at


async def until(predicate: Any, timeout: float, what: str, processes: List[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a worker exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f}s")
        await asyncio.sleep(0.1)  # files written by other processes: nothing to await


# ---------------------------------------------------------------------------------- main


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def print_round(number: int, r: Round) -> None:
    extra = f"  ({r.note})" if r.note else ""
    if r.lost_when:
        extra += f"\n    the lost messages were {r.lost_when}"
    print(f"  round {number}: published {r.published}, expected {r.expected}, handled {r.handled}, "
          f"lost {r.lost}, duplicates {r.duplicates} (bound {r.bound}; {r.resent_duplicates} of them of messages the "
          f"publisher sent twice), publisher resends {r.resends}, "
          f"down {r.down_s:.2f} s, recover {seconds(r.recover_s)}, first new message {seconds(r.new_flow_s)} "
          f"(publisher's first confirm {seconds(r.publisher_back_s)}), "
          f"per worker {r.per_worker}, round {r.round_s:.0f} s{extra}", flush=True)


async def run_broker(kind: str, args: argparse.Namespace) -> List[Round]:
    base = Path(tempfile.mkdtemp(prefix=f"bench-restarts-{kind}-"))
    server: BrokerServer | None = None
    try:
        (base / "bench_restart_app.py").write_text(textwrap.dedent(APP_MODULE))
        server = server_for(kind, base / "broker")
        server.workdir.mkdir()
        if kind == "rabbitmq":
            server.start_timeout = args.rabbitmq_start_timeout
        try:
            await server.start()
        except (RuntimeError, TimeoutError) as exc:
            if kind != "rabbitmq":
                raise
            print(f"  private RabbitMQ node did not start ({exc}); using the shared one on 5672 and "
                  "rabbitmqctl close_connection instead of a restart", flush=True)
            server.close()
            server = SharedRabbitMQ(base / "broker")
        print(f"{kind}: {server.name} on port {server.port}, signal {signal.Signals(args.signal_for(kind)).name}, "
              f"{args.events} events at {args.rate}/s, {args.workers} workers x max_in_flight {args.max_in_flight}",
              flush=True)
        rounds: List[Round] = []
        for number in range(1, args.rounds + 1):
            r = await run_round(kind, server, args, base)
            print_round(number, r)
            rounds.append(r)
        return rounds
    finally:
        if server is not None:
            server.close()
        if args.keep:
            print(f"  kept {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)


async def delete_shared_queues(prefix: str) -> None:
    """Delete the queues a round made on the shared RabbitMQ (its queue, retry and dead-letter
    queues: every name starting with ``prefix``)."""
    import aio_pika

    listing = await rabbitmqctl("list_queues", "name", "--no-table-headers")
    names = [line.strip() for line in listing.splitlines() if line.strip().startswith(prefix)]
    connection = await aio_pika.connect(SHARED_RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for queue in names:
            await channel.queue_delete(queue)


def summary(results: Dict[str, List[Round]]) -> None:
    print("\n| Broker | lost | duplicates | bound | time to recover | first new message handled "
          "(publisher's first confirm) | broker down |")
    print("|---|---|---|---|---|---|---|")
    for kind, rounds in results.items():
        def joined(values: List[str]) -> str:
            return " / ".join(values)

        print(f"| {kind} | {joined([f'{r.lost} of {r.expected}' for r in rounds])} "
              f"| {joined([str(r.duplicates) for r in rounds])} | {rounds[0].bound} "
              f"| {joined([seconds(r.recover_s) for r in rounds])} "
              f"| {joined([f'{seconds(r.new_flow_s)} ({seconds(r.publisher_back_s)})' for r in rounds])} "
              f"| {joined([f'{r.down_s:.1f} s' for r in rounds])} |")
        recovers = [r.recover_s for r in rounds if r.recover_s is not None]
        if recovers:
            print(f"<!-- {kind}: median time to recover {statistics.median(recovers):.2f} s -->")


def parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", action="append", choices=(*BROKERS, "mqtt"),
                        help="broker kind (repeatable; 'mqtt' = the three MQTT kinds); default: all")
    parser.add_argument("--events", type=int, default=5_000, help="messages published per round")
    parser.add_argument("--rate", type=float, default=250.0, help="messages published per second")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--work", type=float, default=0.005, help="seconds each handler sleeps")
    parser.add_argument("--signal", choices=("kill", "term"), help="how the broker is stopped (default per broker: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_SIGNAL.items()) + ")")
    parser.add_argument("--drain-timeout", type=float, default=45.0,
                        help="seconds to wait, after the last publish, for every message to be handled")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait afterwards for late redeliveries (plus the broker's redelivery delay)")
    parser.add_argument("--redis-claim-idle", type=float, default=5.0, help="RedisStreamListener claim_idle")
    parser.add_argument("--nats-ack-wait", type=float, default=5.0, help="NATSListener ack_wait")
    parser.add_argument("--rabbitmq-start-timeout", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, records)")
    args = parser.parse_args(argv)
    kinds: List[str] = []
    for kind in args.broker or BROKERS:
        kinds += ["mqtt-plain", "mqtt-persistent", "mqtt-shared"] if kind == "mqtt" else [kind]
    args.kinds = list(dict.fromkeys(kinds))

    def signal_for(kind: str) -> int:
        chosen = args.signal or DEFAULT_SIGNAL[kind.split("-")[0]]
        return signal.SIGKILL if chosen == "kill" else signal.SIGTERM

    args.signal_for = signal_for
    tool = Path(sys.executable).parent / "tiny-listener"
    args.tiny_listener = str(tool) if tool.exists() else (shutil.which("tiny-listener") or "tiny-listener")
    return args


def code_version() -> str:
    """The commit this checkout is at (short hash and subject)."""
    found = subprocess.run(["git", "-C", str(HERE), "log", "-1", "--format=%h %<(60,trunc)%s"], capture_output=True,
                           text=True, check=False)
    return found.stdout.strip()


def quiet_publisher_noise(loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
    """aiomqtt sets an error on a future of the publisher's client that nobody awaits when the
    broker goes away ("Future exception was never retrieved"): expected here, not worth a line."""
    exception = context.get("exception")
    if exception is not None and type(exception).__module__.startswith("aiomqtt"):
        return
    loop.default_exception_handler(context)


async def main(args: argparse.Namespace) -> None:
    import tiny_listener

    commit = code_version()
    print(f"tiny-listener {tiny_listener.__version__} ({commit or 'not a git checkout'}), "
          f"Python {sys.version.split()[0]}", flush=True)
    asyncio.get_running_loop().set_exception_handler(quiet_publisher_noise)
    # The publisher's clients log each failed attempt while the broker is away: expected here.
    for noisy in ("aio_pika", "aiormq", "nats", "redis", "mqtt", "paho"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    results: Dict[str, List[Round]] = {}
    for kind in args.kinds:
        try:
            results[kind] = await run_broker(kind, args)
        except Exception as exc:  # one broker failing to run does not hide the others' figures
            print(f"{kind}: not measured: {type(exc).__name__}: {exc}", flush=True)
    if results:
        summary(results)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
