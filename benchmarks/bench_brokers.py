"""Every broker side by side: tiny-listener, FastStream's subscriber and a bare client loop.

For each broker (Redis Streams, NATS JetStream, RabbitMQ, MQTT QoS 1), each round pre-publishes
``BENCH_EVENTS`` (20,000) JSON messages (``{"amount": n % 97}``, the number ``n`` in the path,
subject, header or topic), then runs ONE consumer process that handles them all with 100 in
flight and acknowledges each message after its handler: this project's listener, FastStream
0.7.8's subscriber (``max_workers=100``, or for RabbitMQ a channel prefetch of 100) or the client
library's bare loop. The three run one after the other, in turn, for ``--rounds`` rounds.

The consumer process times itself from starting to consume (after imports and set-up) until
every message was handled: events/s, and its own CPU (user + sys, ``time.process_time``) per
event. It reports how many distinct messages it handled; the driver then asks the broker that
nothing is left unacknowledged (Redis: the group's pending list is empty and it read the last
entry; NATS: the consumer has nothing pending or unacknowledged; RabbitMQ: the queue is empty
once the consumer closed; MQTT: the session gives nothing back on reconnecting) and deletes
what it made (streams, consumers, queues). The shared brokers are never flushed or stopped;
MQTT runs against a Mosquitto started here on a free port, because the shared one queues at
most 1000 messages for a session and lets 20 through at a time.

Prints, per broker, the median events/s and CPU per event of each side and the medians of the
per-round ratios (ours/bare CPU, ours/FastStream events/s) beside the goals of issue 13.

    python benchmarks/bench_brokers.py                       # every broker, 3 rounds
    python benchmarks/bench_brokers.py --broker nats --broker rabbitmq --rounds 5
    python benchmarks/bench_brokers.py --broker redis --profile /tmp/prof   # cProfile each consumer
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from _broker_throughput import handle  # the work every event costs, on every side
from _harness import eprint, report
from faststream import Path as FastStreamPath
from faststream.rabbit import RabbitMessage
from faststream.redis import RedisStreamMessage

from tiny_listener import Data, Param
from tiny_listener.codecs import JsonCodec

HERE = Path(__file__).resolve().parent
EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
IN_FLIGHT = 100
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
SIDES = ("tiny_listener", "faststream", "bare")
BROKERS = ("redis", "nats", "rabbitmq", "mqtt")
PATH_HEADER = "x-event-path"  # RabbitMQ: tiny_listener.amqp.EVENT_PATH, checked below


def payload(n: int) -> bytes:
    return json.dumps({"amount": n % 97}).encode()


# ================================================================ the consumer process

class Handled:
    """Counts distinct handled messages; ``done`` is set when all ``EVENTS`` were."""

    def __init__(self) -> None:
        self.seen = bytearray(EVENTS)
        self.count = 0
        self.done = asyncio.Event()

    async def __call__(self, n: int, amount: int) -> int:
        result = await handle(n, amount)
        if not self.seen[n]:
            self.seen[n] = 1
            self.count += 1
            if self.count == EVENTS:
                self.done.set()
        return result


CLIENT_LIBRARIES = {"redis": "redis.asyncio", "nats": "nats", "rabbitmq": "aio_pika", "mqtt": "aiomqtt"}


async def consume(broker: str, side: str, spec: Dict[str, Any]) -> Dict[str, Any]:
    """Run one consumer until every message was handled; return its figures."""
    # Every side imports the client library before timing starts (tiny-listener would import
    # it lazily, on connecting: its import time is not what a consumer costs per message).
    importlib.import_module(CLIENT_LIBRARIES[broker])
    handled = Handled()
    start_consuming, stop_consuming = await CONSUMERS[broker][side](spec, handled)
    started, cpu_started = time.perf_counter(), time.process_time()
    await start_consuming()
    try:
        await asyncio.wait_for(handled.done.wait(), 300)
    finally:
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await stop_consuming()
    return {"events_per_s": EVENTS / elapsed, "cpu_us": cpu / EVENTS * 1e6, "handled": handled.count}


Starter = Callable[[], Any]


# ---------------------------------------------------------------- Redis Streams

async def redis_ours(spec: Dict[str, Any], handled: Handled) -> Any:
    from tiny_listener.redis import RedisStreamListener

    app: Any = RedisStreamListener(REDIS_URL, streams=[spec["stream"]], group=spec["group"], consumer="ours",
                                   max_in_flight=IN_FLIGHT, max_retries=0, claim_idle=600)

    @app.on_event("item:{n:int}")
    async def item(n: Param, amount: Data) -> int:
        return await handled(n, amount)

    return _listener_start_stop(app)


async def redis_faststream(spec: Dict[str, Any], handled: Handled) -> Any:
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(REDIS_URL, log_level=30)

    @broker.subscriber(stream=StreamSub(spec["stream"], group=spec["group"], consumer="faststream",
                                        max_records=IN_FLIGHT), max_workers=IN_FLIGHT)
    async def item(body: Dict[str, Any], message: RedisStreamMessage) -> int:
        return await handled(int(message.headers["n"]), body["amount"])

    return _faststream_start_stop(broker)


async def redis_bare(spec: Dict[str, Any], handled: Handled) -> Any:
    import redis.asyncio

    client = redis.asyncio.from_url(REDIS_URL)
    stream, group = spec["stream"], spec["group"]
    task: asyncio.Task[None] | None = None

    async def loop() -> None:
        while not handled.done.is_set():
            reply = await client.xreadgroup(group, "bare", {stream: ">"}, count=IN_FLIGHT, block=100)
            for _, entries in reply or ():
                ids = []
                for message_id, fields in entries:
                    n = int(fields[b"path"].split(b":")[1])
                    await handled(n, json.loads(fields[b"data"])["amount"])
                    ids.append(message_id)
                await client.xack(stream, group, *ids)

    async def start() -> None:
        nonlocal task
        task = asyncio.create_task(loop())

    async def stop() -> None:
        assert task is not None
        await task
        await client.aclose()

    return start, stop


# ---------------------------------------------------------------- NATS JetStream

async def nats_ours(spec: Dict[str, Any], handled: Handled) -> Any:
    from tiny_listener.nats import NATSListener

    app: Any = NATSListener(NATS_URL, stream=spec["stream"], durable=spec["durable"], max_in_flight=IN_FLIGHT,
                            max_retries=0, dead_letter=False)

    @app.on_event(spec["subject"] + ".{n:int}")
    async def item(n: Param, amount: Data) -> int:
        return await handled(n, amount)

    return _listener_start_stop(app)


async def nats_faststream(spec: Dict[str, Any], handled: Handled) -> Any:
    from faststream.nats import JStream, NatsBroker, PullSub

    broker = NatsBroker(NATS_URL, log_level=30)

    @broker.subscriber(spec["subject"] + ".{n}", stream=JStream(spec["stream"], declare=False),
                       durable=spec["durable"], pull_sub=PullSub(batch_size=IN_FLIGHT), max_workers=IN_FLIGHT)
    async def item(body: Dict[str, Any], n: str = FastStreamPath()) -> int:
        return await handled(int(n), body["amount"])

    return _faststream_start_stop(broker)


async def nats_bare(spec: Dict[str, Any], handled: Handled) -> Any:
    from nats.js.api import AckPolicy, ConsumerConfig

    import nats

    nc: Any = None
    task: asyncio.Task[None] | None = None

    async def loop(subscription: Any) -> None:
        while not handled.done.is_set():
            try:
                messages = await subscription.fetch(IN_FLIGHT, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for message in messages:
                n = int(message.subject.rsplit(".", 1)[1])
                await handled(n, json.loads(message.data)["amount"])
                await message.ack()

    async def start() -> None:
        nonlocal nc, task
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        await js.add_consumer(spec["stream"], config=ConsumerConfig(
            durable_name=spec["durable"], ack_policy=AckPolicy.EXPLICIT, filter_subject=spec["subject"] + ".*"))
        task = asyncio.create_task(loop(await js.pull_subscribe_bind(durable=spec["durable"], stream=spec["stream"])))

    async def stop() -> None:
        assert task is not None
        await task
        await nc.flush()
        await nc.close()

    return start, stop


# ---------------------------------------------------------------- RabbitMQ

async def rabbitmq_ours(spec: Dict[str, Any], handled: Handled) -> Any:
    from tiny_listener.amqp import EVENT_PATH, AMQPListener

    assert EVENT_PATH == PATH_HEADER
    app: Any = AMQPListener(AMQP_URL, queue=spec["queue"], max_in_flight=IN_FLIGHT, max_retries=0, dead_letter=False)

    @app.on_event("item.{n:int}")
    async def item(n: Param, amount: Data) -> int:
        return await handled(n, amount)

    return _listener_start_stop(app)


async def rabbitmq_faststream(spec: Dict[str, Any], handled: Handled) -> Any:
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    broker = RabbitBroker(AMQP_URL, log_level=30)

    # No max_workers for RabbitMQ in FastStream 0.7.8: the channel's prefetch is its concurrency.
    @broker.subscriber(RabbitQueue(spec["queue"], durable=True), channel=Channel(prefetch_count=IN_FLIGHT))
    async def item(body: Dict[str, Any], message: RabbitMessage) -> int:
        return await handled(int(message.headers[PATH_HEADER].split(".")[1]), body["amount"])

    return _faststream_start_stop(broker)


async def rabbitmq_bare(spec: Dict[str, Any], handled: Handled) -> Any:
    import aio_pika

    connection: Any = None

    async def on_message(message: Any) -> None:
        n = int(message.headers[PATH_HEADER].split(".")[1])
        await handled(n, json.loads(message.body)["amount"])
        await message.ack()

    async def start() -> None:
        nonlocal connection
        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=IN_FLIGHT)
        queue = await channel.declare_queue(spec["queue"], durable=True)
        await queue.consume(on_message)

    async def stop() -> None:
        await connection.close()

    return start, stop


# ---------------------------------------------------------------- MQTT QoS 1 (persistent session)

async def mqtt_ours(spec: Dict[str, Any], handled: Handled) -> Any:
    from tiny_listener.mqtt import MQTTListener

    app: Any = MQTTListener(spec["url"], qos=1, client_id=spec["client_id"], clean_session=False,
                            max_in_flight=IN_FLIGHT, max_retries=0, codec=JsonCodec())

    @app.on_event(spec["prefix"] + "/{n:int}")
    async def item(n: Param, amount: Data) -> int:
        return await handled(n, amount)

    return _listener_start_stop(app)


async def mqtt_faststream(spec: Dict[str, Any], handled: Handled) -> Any:
    from faststream.mqtt import MQTTBroker, QoS

    broker = MQTTBroker(spec["url"], client_id=spec["client_id"], clean_session=False, log_level=30)

    @broker.subscriber(spec["prefix"] + "/{n}", qos=QoS.AT_LEAST_ONCE, max_workers=IN_FLIGHT)
    async def item(body: Dict[str, Any], n: str = FastStreamPath()) -> int:
        return await handled(int(n), body["amount"])

    return _faststream_start_stop(broker)


async def mqtt_bare(spec: Dict[str, Any], handled: Handled) -> Any:
    import aiomqtt

    host, port = spec["host"], spec["port"]
    client = aiomqtt.Client(host, port, identifier=spec["client_id"], clean_session=False)
    client._client.manual_ack_set(True)  # paho acknowledges QoS 1 on receipt otherwise
    paho = client._client
    task: asyncio.Task[None] | None = None

    async def loop() -> None:
        async for message in client.messages:
            n = int(message.topic.value.rsplit("/", 1)[1])
            await handled(n, json.loads(message.payload)["amount"])  # type: ignore[arg-type]
            paho.ack(message.mid, message.qos)
            if handled.done.is_set():
                return

    async def start() -> None:
        nonlocal task
        await client.__aenter__()
        await client.subscribe(spec["prefix"] + "/+", qos=1)
        task = asyncio.create_task(loop())

    async def stop() -> None:
        assert task is not None
        await task
        await client.__aexit__(None, None, None)

    return start, stop


def _faststream_start_stop(broker: Any) -> Any:
    async def stop() -> None:
        # FastStream acknowledges after the handler returned, and its stop() does not wait for
        # its workers: give the last acknowledgements a moment (not timed) before stopping.
        await asyncio.sleep(0.5)
        await broker.stop()

    return broker.start, stop


def _listener_start_stop(app: Any) -> Any:
    task: asyncio.Task[None] | None = None

    async def start() -> None:
        nonlocal task
        task = asyncio.create_task(app.main())

    async def stop() -> None:
        assert task is not None
        app.stop()
        await task

    return start, stop


CONSUMERS: Dict[str, Dict[str, Callable[..., Any]]] = {
    "redis": {"tiny_listener": redis_ours, "faststream": redis_faststream, "bare": redis_bare},
    "nats": {"tiny_listener": nats_ours, "faststream": nats_faststream, "bare": nats_bare},
    "rabbitmq": {"tiny_listener": rabbitmq_ours, "faststream": rabbitmq_faststream, "bare": rabbitmq_bare},
    "mqtt": {"tiny_listener": mqtt_ours, "faststream": mqtt_faststream, "bare": mqtt_bare},
}


def consumer_main(argument: str) -> None:
    job = json.loads(argument)
    profile = job.get("profile")
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
        figures = profiler.runcall(asyncio.run, consume(job["broker"], job["side"], job["spec"]))
        profiler.dump_stats(profile)
    else:
        figures = asyncio.run(consume(job["broker"], job["side"], job["spec"]))
    print("RESULT " + json.dumps(figures), flush=True)


# ================================================================ the driver: prepare, check, clean up

class Redis:
    """A new stream per measurement; the group is made at its start, before the consumer."""

    async def open(self) -> None:
        import redis.asyncio
        from faststream.redis import RedisBroker

        self.client = redis.asyncio.from_url(REDIS_URL)
        self.faststream = RedisBroker(REDIS_URL, log_level=30)
        await self.faststream.connect()

    async def prepare(self, side: str) -> Dict[str, Any]:
        stream, group = f"bench:brokers:{uuid.uuid4().hex[:8]}", "bench"
        if side == "faststream":  # FastStream's own message format (body and headers in one field)
            for start in range(0, EVENTS, 50):  # a connection each from the pool: 50 at a time
                await asyncio.gather(*(self.faststream.publish({"amount": n % 97}, stream=stream,
                                                               headers={"n": str(n)})
                                       for n in range(start, min(start + 50, EVENTS))))
        else:
            from tiny_listener.redis import RedisPublisher

            async with RedisPublisher(client=self.client) as publisher:
                await publisher.publish_many(stream, [(f"item:{n}", {"amount": n % 97}) for n in range(EVENTS)])
        await self.client.xgroup_create(stream, group, id="0")
        last = await self.client.xrevrange(stream, count=1)
        return {"stream": stream, "group": group, "last": last[0][0].decode()}

    async def check(self, spec: Dict[str, Any]) -> str | None:
        [group] = await self.client.xinfo_groups(spec["stream"])
        if group["pending"] or group["last-delivered-id"].decode() != spec["last"]:
            return f"{group['pending']} pending, last delivered {group['last-delivered-id']!r} of {spec['last']!r}"
        return None

    async def clean(self, spec: Dict[str, Any]) -> None:
        await self.client.delete(spec["stream"])

    async def close(self) -> None:
        await self.faststream.stop()
        await self.client.aclose()


class Nats:
    """One stream filled once; a new durable consumer (reading it from the start) per measurement."""

    async def open(self) -> None:
        import nats

        self.nc = await nats.connect(NATS_URL)
        self.js = self.nc.jetstream()
        self.stream = f"BENCHB_{uuid.uuid4().hex[:8]}"
        self.subject = f"{self.stream.lower()}.item"
        await self.js.add_stream(name=self.stream, subjects=[f"{self.subject}.*"])
        for start in range(0, EVENTS, 500):
            await asyncio.gather(*(self.js.publish(f"{self.subject}.{n}", payload(n))
                                   for n in range(start, min(start + 500, EVENTS))))

    async def prepare(self, side: str) -> Dict[str, Any]:
        return {"stream": self.stream, "subject": self.subject, "durable": f"bench{uuid.uuid4().hex[:8]}"}

    async def check(self, spec: Dict[str, Any]) -> str | None:
        info = await self.js.consumer_info(spec["stream"], spec["durable"])
        if info.num_pending or info.num_ack_pending:
            return f"{info.num_pending} pending, {info.num_ack_pending} unacknowledged"
        return None

    async def clean(self, spec: Dict[str, Any]) -> None:
        import nats

        try:
            await self.js.delete_consumer(spec["stream"], spec["durable"])
        except nats.js.errors.NotFoundError:
            pass

    async def close(self) -> None:
        await self.js.delete_stream(self.stream)
        await self.nc.close()


class RabbitMQ:
    """A new durable queue per measurement, filled before the consumer starts."""

    async def open(self) -> None:
        import aio_pika

        self.connection = await aio_pika.connect(AMQP_URL)
        self.channel = await self.connection.channel()

    async def prepare(self, side: str) -> Dict[str, Any]:
        import aio_pika

        queue = f"bench-brokers-{uuid.uuid4().hex[:8]}"
        await self.channel.declare_queue(queue, durable=True)
        exchange = self.channel.default_exchange
        for start in range(0, EVENTS, 500):
            await asyncio.gather(*(
                exchange.publish(aio_pika.Message(payload(n), headers={PATH_HEADER: f"item.{n}"},
                                                  content_type="application/json"), routing_key=queue)
                for n in range(start, min(start + 500, EVENTS))
            ))
        return {"queue": queue}

    async def check(self, spec: Dict[str, Any]) -> str | None:
        left = (await self.channel.declare_queue(spec["queue"], passive=True)).declaration_result.message_count
        return f"{left} message(s) left in the queue" if left else None

    async def clean(self, spec: Dict[str, Any]) -> None:
        await self.channel.queue_delete(spec["queue"])

    async def close(self) -> None:
        await self.connection.close()


class Mqtt:
    """A Mosquitto of our own (no limit on queued messages, 100 in flight per client); a new
    persistent session per measurement, subscribed before the messages are published."""

    async def open(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory, self.process = start_mosquitto(self.port)
        for _ in range(500):  # until it listens (another process: nothing to await but a connection)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.01)

    async def prepare(self, side: str) -> Dict[str, Any]:
        import aiomqtt

        run = uuid.uuid4().hex[:8]
        spec = {"url": f"mqtt://127.0.0.1:{self.port}", "host": "127.0.0.1", "port": self.port,
                "client_id": f"bench-{run}", "prefix": f"bench/{run}/item"}
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=spec["client_id"], clean_session=False) as c:
            await c.subscribe(spec["prefix"] + "/+", qos=1)
        async with aiomqtt.Client("127.0.0.1", self.port, max_inflight_messages=100) as publisher:
            # 100 publishes in flight at a time, by design: aiomqtt warns past 10 per publish.
            publisher.pending_calls_threshold = 100
            for start in range(0, EVENTS, 100):
                await asyncio.gather(*(publisher.publish(f"{spec['prefix']}/{n}", payload(n), qos=1)
                                       for n in range(start, min(start + 100, EVENTS))))
        return spec

    async def check(self, spec: Dict[str, Any]) -> str | None:
        import aiomqtt

        # Whatever was not acknowledged comes back to the session at once on reconnecting.
        returned = 0
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=spec["client_id"], clean_session=False) as c:
            try:
                async with asyncio.timeout(0.5) if sys.version_info >= (3, 11) else _timeout(0.5):
                    async for _ in c.messages:
                        returned += 1
            except (asyncio.TimeoutError, TimeoutError):
                pass
        return f"{returned} message(s) redelivered to the session" if returned else None

    async def clean(self, spec: Dict[str, Any]) -> None:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", self.port, identifier=spec["client_id"], clean_session=True):
            pass  # a clean session discards the persistent one

    async def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_mosquitto(port: int) -> Tuple[str, subprocess.Popen[bytes]]:
    """Start a Mosquitto listening on ``port``: no limit on the messages queued for a
    session, 100 QoS 1 messages in flight per client. Return its directory and process."""
    directory = tempfile.mkdtemp(prefix="bench-mqtt-")
    config = Path(directory, "mosquitto.conf")
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                      "max_queued_messages 0\nmax_inflight_messages 100\n")
    return directory, subprocess.Popen(["mosquitto", "-c", str(config)], stderr=subprocess.DEVNULL)


def _timeout(seconds: float) -> Any:
    raise SystemExit("MQTT check needs Python 3.11+ (asyncio.timeout)")


DRIVERS = {"redis": Redis, "nats": Nats, "rabbitmq": RabbitMQ, "mqtt": Mqtt}


async def measure(driver: Any, broker: str, side: str, profile: str | None) -> Dict[str, Any]:
    spec = await driver.prepare(side)
    try:
        job = {"broker": broker, "side": side, "spec": spec}
        if profile:
            job["profile"] = os.path.join(profile, f"{broker}-{side}.pstats")
        command = [sys.executable, str(HERE / "bench_brokers.py"), "--consumer", json.dumps(job)]
        callgrind = os.environ.get("BENCH_CALLGRIND_DIR")
        if callgrind:  # instructions, not time: see bench_broker_instructions.py
            out = os.path.join(callgrind, f"{broker}-{side}-{EVENTS}.out")
            command[:0] = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--log-file={out}.log"]
        proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        lines = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise SystemExit(f"{broker}/{side}: the consumer failed (exit status {proc.returncode})")
        figures: Dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
        if figures["handled"] != EVENTS:
            raise SystemExit(f"{broker}/{side}: handled {figures['handled']} of {EVENTS} messages")
        problem = await driver.check(spec)
        if problem and side == "faststream":  # theirs to fix: said, and kept in the figures
            eprint(f"{broker}/{side}: WARNING not every message was acknowledged: {problem}")
            figures["unacknowledged"] = problem
        elif problem:
            raise SystemExit(f"{broker}/{side}: not every message was acknowledged: {problem}")
    finally:
        await driver.clean(spec)
    return figures


async def run(brokers: List[str], rounds: int, profile: str | None, sides: Tuple[str, ...] = SIDES) -> None:
    results: Dict[str, Any] = {"events_per_measurement": EVENTS, "in_flight": IN_FLIGHT, "rounds": rounds}
    for broker in brokers:
        driver = DRIVERS[broker]()
        await driver.open()
        runs: Dict[str, List[Dict[str, Any]]] = {side: [] for side in sides}
        try:
            for round_number in range(rounds):
                for side in sides:
                    runs[side].append(await measure(driver, broker, side, profile))
                eprint(f"{broker} round {round_number + 1}: " + ", ".join(
                    f"{side}={values[-1]['events_per_s']:.0f}/s {values[-1]['cpu_us']:.1f}us"
                    for side, values in runs.items()))
        finally:
            await driver.close()
        if sides != SIDES:
            print(json.dumps({side: values for side, values in runs.items()}))
            continue
        for side, values in runs.items():
            results[f"{broker}_{side}_events_per_s"] = statistics.median(v["events_per_s"] for v in values)
            results[f"{broker}_{side}_cpu_us_per_event"] = statistics.median(v["cpu_us"] for v in values)
        ours, fast, bare = runs["tiny_listener"], runs["faststream"], runs["bare"]
        results[f"{broker}_cpu_ours_over_bare"] = statistics.median(
            o["cpu_us"] / b["cpu_us"] for o, b in zip(ours, bare))
        results[f"{broker}_rate_ours_over_faststream"] = statistics.median(
            o["events_per_s"] / f["events_per_s"] for o, f in zip(ours, fast))
        results[f"{broker}_rate_ours_over_bare"] = statistics.median(
            o["events_per_s"] / b["events_per_s"] for o, b in zip(ours, bare))
    if sides != SIDES:
        return
    report("brokers", results)
    print()
    print("| broker | tiny-listener | FastStream 0.7.8 | bare client loop | ours/bare CPU (goal <= 1.2) "
          "| ours/FastStream ev/s (goal >= 2) |")
    print("|---|---|---|---|---|---|")
    for broker in brokers:
        cells = [f"{results[f'{broker}_{side}_events_per_s']:,.0f} ev/s, "
                 f"{results[f'{broker}_{side}_cpu_us_per_event']:.1f} µs" for side in SIDES]
        print(f"| {broker} | " + " | ".join(cells) + f" | {results[f'{broker}_cpu_ours_over_bare']:.2f}x "
              f"| {results[f'{broker}_rate_ours_over_faststream']:.2f}x |")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--consumer":
        consumer_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", action="append", choices=BROKERS, help="a broker to measure (repeat it)")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    parser.add_argument("--side", action="append", choices=SIDES, help="only this side (repeat it); no ratios")
    parser.add_argument("--profile", metavar="DIR", help="cProfile every consumer, into DIR/<broker>-<side>.pstats")
    args = parser.parse_args()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    started = time.monotonic()
    asyncio.run(run(args.broker or list(BROKERS), args.rounds, args.profile, tuple(args.side or SIDES)))
    eprint(f"took {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
