"""What a broker may override in the one delivery flow (tiny_listener.sources.broker), driven
through MemoryBroker subclasses: refusing a message, a dead-letter target per message, a retry
wait that hands the message back, and per-key ordering."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Hashable, List, Set

from tiny_listener import Event, Listener, Param
from tiny_listener._types import EventData
from tiny_listener.codecs import Codec
from tiny_listener.delivery import UndeliverableMessage
from tiny_listener.sources import BrokerMessage
from tiny_listener.testing import MemoryBroker, Outcome
from tiny_listener.testing.memory import MemoryMessage


def host(broker: MemoryBroker) -> MemoryBroker:
    app: Listener[Any] = Listener()
    return app.add_source(broker)


async def test_a_message_its_adapter_refuses_is_dead_lettered_with_the_adapters_reason() -> None:
    class Refusing(MemoryMessage):
        __slots__ = ()

        def event_data(self, codec: Codec) -> EventData:
            if self.path.startswith("poison"):
                raise UndeliverableMessage("poisoned", "this one kills its consumers")
            return super().event_data(codec)

    class Broker(MemoryBroker):
        async def receive(self, max_messages: int) -> Any:
            return [Refusing(m.delivery, m.attempt, self) for m in await super().receive(max_messages)]

    broker = host(Broker())
    ran: List[str] = []

    @broker.listener.on_event("{name}")
    async def handler(name: Param) -> None:
        ran.append(name)

    async with broker:
        poison = await broker.publish("poison")
        fine = await broker.publish("fine")
        await broker.settled()
    assert ran == ["fine"]
    assert (poison.outcome, poison.reason, fine.outcome) == (Outcome.DEAD_LETTERED, "poisoned", Outcome.ACKED)
    [letter] = broker.dead_letters
    assert isinstance(letter.error, UndeliverableMessage) and str(letter.error) == "this one kills its consumers"


async def test_the_dead_letter_target_can_depend_on_the_message() -> None:
    class PerPrefix(MemoryBroker):
        def dead_letter_target_for(self, message: BrokerMessage) -> str | None:
            return f"{message.path.split('.')[0]}.dead"

    broker = host(PerPrefix(max_retries=0))

    @broker.listener.on_event("{kind}.{n:int}")
    async def fail(kind: Param) -> None:
        raise ValueError(kind)

    async with broker:
        await broker.publish("orders.1")
        await broker.publish("invoices.2")
        await broker.settled()
    assert sorted(letter.target for letter in broker.dead_letters) == ["invoices.dead", "orders.dead"]


async def test_a_retry_wait_that_says_no_hands_the_message_back_without_retrying() -> None:
    class GivesUp(MemoryBroker):
        async def wait_before_retry(self, message: BrokerMessage, delay: float) -> bool:
            await super().wait_before_retry(message, delay)
            return False

    broker = host(GivesUp(redelivers=False, max_retries=3))
    attempts: List[int] = []

    @broker.listener.on_event("flaky")
    async def flaky(event: Event) -> None:
        attempts.append(event.ctx.scope["attempt"])
        if len(attempts) == 1:
            raise RuntimeError("first time")

    async with broker:
        delivery = await (await broker.publish("flaky")).settled()
    # Handed back as it was: delivered again as the same attempt, not run as a retry.
    assert attempts == [1, 1]
    assert delivery.outcome is Outcome.ACKED


async def test_ordered_messages_of_one_key_run_one_at_a_time_in_order_others_concurrently() -> None:
    class ByAccount(MemoryBroker):
        ordered = True

        def ordering_key(self, message: BrokerMessage) -> Hashable | None:
            account = message.path.split(".")[1]
            return None if account == "any" else account

    broker = host(ByAccount(max_in_flight=20, redelivers=False, max_retries=1))
    seen: Dict[str, List[int]] = {"a": [], "b": []}
    running: Set[str] = set()
    b_started = asyncio.Event()
    failed_once: Set[int] = set()

    @broker.listener.on_event("transfer.{account}.{seq:int}")
    async def transfer(account: Param, seq: Param) -> None:
        assert account not in running, f"two events of account {account} ran at once"
        running.add(account)
        try:
            if account == "b":
                b_started.set()
            elif seq == 0:
                await b_started.wait()  # "b" runs while "a" waits: other keys are not held up
            for _ in range(3):
                await asyncio.sleep(0)
            if seq == 1 and account not in failed_once:
                failed_once.add(account)
                raise RuntimeError("retried before the next of its key")
            seen[account].append(seq)
        finally:
            running.discard(account)

    @broker.listener.on_event("transfer.any")
    async def unordered() -> None:
        pass

    async with broker:
        for seq in range(6):
            for account in ("a", "b"):
                await broker.publish(f"transfer.{account}.{seq}")
        await broker.publish("transfer.any")
        await broker.settled()
    assert seen == {"a": list(range(6)), "b": list(range(6))}
    assert all(delivery.outcome is Outcome.ACKED for delivery in broker.deliveries)
