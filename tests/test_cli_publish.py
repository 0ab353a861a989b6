"""``tiny-listener publish MODULE:ATTR PATH --data JSON``, against the NATS and RabbitMQ
brokers on loopback (and brokers that are not there)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from .cli_helpers import run_cli, write_module
from .conftest import free_port, require_service

NATS_APP = """
    from tiny_listener.nats import NATSListener

    app = NATSListener({url!r}, stream="{stream}", durable="workers")


    @app.on_event("{prefix}.orders.{{id}}")
    async def order():
        pass
"""

AMQP_APP = """
    from tiny_listener.amqp import AMQPListener

    app = AMQPListener({url!r}, queue="{queue}")


    @app.on_event("orders.{{id}}")
    async def order():
        pass
"""


async def publish(*args: str, cwd: Path) -> Any:
    """Run the command in a thread: the test's own broker client keeps working meanwhile."""
    return await asyncio.to_thread(run_cli, "publish", *args, cwd=cwd)


def test_an_app_without_a_broker_source_that_can_publish_is_one_line_and_exit_1(tmp_path: Path) -> None:
    write_module(tmp_path, "plain", "from tiny_listener import Listener\napp = Listener()\n")
    result = run_cli("publish", "plain:app", "orders.1", "--data", "{}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: Listener(routes_count=0) hosts no broker source that can publish (NATS, RabbitMQ)"
    ]


def test_data_that_is_not_json_is_a_usage_error(tmp_path: Path) -> None:
    write_module(tmp_path, "plain", "from tiny_listener import Listener\napp = Listener()\n")
    result = run_cli("publish", "plain:app", "orders.1", "--data", "{nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "Invalid value for --data: not valid JSON" in result.stderr


@pytest.fixture
async def nats_client() -> Any:
    require_service("NATS", "127.0.0.1", 4222)
    nats = pytest.importorskip("nats")
    nc = await nats.connect("nats://127.0.0.1:4222")
    yield nc
    await nc.close()


async def test_nats_the_message_is_stored_by_the_apps_stream(tmp_path: Path, nats_client: Any) -> None:
    prefix = f"tl{uuid.uuid4().hex[:10]}"
    stream = f"{prefix}_s"
    js = nats_client.jetstream()
    await js.add_stream(name=stream, subjects=[f"{prefix}.orders.*"])
    try:
        write_module(tmp_path, "natsapp", NATS_APP.format(url="nats://127.0.0.1:4222", stream=stream, prefix=prefix))
        result = await publish("natsapp:app", f"{prefix}.orders.7", "--data", '{"amount": 12.5}', cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        stored = await js.get_msg(stream, 1)
        assert stored.subject == f"{prefix}.orders.7"
        assert json.loads(stored.data) == {"amount": 12.5}
        # Nothing was consumed, and no consumer was made: publishing only.
        assert (await js.stream_info(stream)).state.consumer_count == 0

        nowhere = await publish("natsapp:app", f"{prefix}.nowhere", cwd=tmp_path)
        assert nowhere.returncode == 1
        assert nowhere.stderr.strip().splitlines() == [
            f"Error: NATS at nats://127.0.0.1:4222 did not take '{prefix}.nowhere': "
            "NoStreamResponseError: nats: no response from stream"
        ]
    finally:
        await js.delete_stream(stream)


async def test_nats_request_prints_the_reply(tmp_path: Path, nats_client: Any) -> None:
    prefix = f"tl{uuid.uuid4().hex[:10]}"

    async def respond(message: Any) -> None:
        await message.respond(json.dumps({"echo": json.loads(message.data)}).encode())

    responder = await nats_client.subscribe(f"{prefix}.echo", cb=respond)
    write_module(tmp_path, "natsapp", NATS_APP.format(url="nats://127.0.0.1:4222", stream="unused", prefix=prefix))
    result = await publish("natsapp:app", f"{prefix}.echo", "--data", "[1, 2]", "--request", cwd=tmp_path)
    await responder.unsubscribe()
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {"echo": [1, 2]}

    nobody = await publish("natsapp:app", f"{prefix}.nobody", "--request", "--timeout", "2", cwd=tmp_path)
    assert nobody.returncode == 1
    assert nobody.stderr.strip().splitlines() == [
        f"Error: no reply to request '{prefix}.nobody': no stream takes the subject and nobody subscribes to it"
    ]


def test_nats_down_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    write_module(tmp_path, "natsapp", NATS_APP.format(url=url, stream="s", prefix="p"))
    result = run_cli("publish", "natsapp:app", "p.orders.1", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: cannot connect to NATS at {url}: ")


async def test_amqp_the_message_lands_in_the_apps_queue(tmp_path: Path) -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    aio_pika = pytest.importorskip("aio_pika")
    url = "amqp://guest:guest@127.0.0.1:5672/"
    queue_name = f"tl-test-{uuid.uuid4().hex[:10]}.q"
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        try:
            write_module(tmp_path, "amqpapp", AMQP_APP.format(url=url, queue=queue_name))
            result = await publish("amqpapp:app", "orders.7", "--data", '{"amount": 12.5}', cwd=tmp_path)
            assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
            message = await queue.get(timeout=5)
            await message.ack()
            assert message.headers["x-event-path"] == "orders.7"
            assert json.loads(message.body) == {"amount": 12.5}
        finally:
            await channel.queue_delete(queue_name)
        # The app's queue is gone: RabbitMQ returns the message, the command says so.
        gone = await publish("amqpapp:app", "orders.8", cwd=tmp_path)
        assert gone.returncode == 1
        lines = gone.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("Error: RabbitMQ at amqp://guest:***@127.0.0.1:5672/ did not take 'orders.8': ")
        assert "NO_ROUTE" in lines[0]


def test_amqp_down_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    write_module(tmp_path, "amqpapp", AMQP_APP.format(url=url, queue="q"))
    result = run_cli("publish", "amqpapp:app", "orders.1", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:{url.split(':')[3]}")


def test_source_names_the_broker_source_to_send_through(tmp_path: Path) -> None:
    write_module(tmp_path, "memapp", """
        from tiny_listener import Listener
        from tiny_listener.testing import MemoryBroker

        app = Listener()
        app.add_source(MemoryBroker(name="mem"))
    """)
    assert run_cli("publish", "memapp:app", "x", "--source", "mem", cwd=tmp_path).returncode == 0
    other = run_cli("publish", "memapp:app", "x", "--source", "kafka", cwd=tmp_path)
    assert other.returncode == 1
    assert other.stderr.strip().splitlines() == [
        "Error: Listener(routes_count=0) hosts no broker source named 'kafka' that can publish"
    ]
