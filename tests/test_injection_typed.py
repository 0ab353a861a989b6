"""Typed event data through the public API: handlers declare models, Structs, dataclasses,
TypedDicts or ``Annotated[T, Data]`` and receive converted values, or the event raises one
ValidationError listing every field error."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import textwrap
from typing import Annotated, Any, Dict, List, Optional, TypedDict

import msgspec
import pydantic
import pytest

from tiny_listener import (
    Context,
    Data,
    Event,
    EventDataError,
    InjectionError,
    Listener,
    Param,
    ValidationError,
    depend,
)


class App(Listener[Context]):
    async def listen(self) -> None:
        await self.wait_for_shutdown()


class Item(pydantic.BaseModel):
    name: str
    price: float


class ItemStruct(msgspec.Struct):
    name: str
    price: float


@dataclasses.dataclass
class ItemData:
    name: str
    price: float


class ItemDict(TypedDict):
    name: str
    price: float


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (Item, Item(name="pen", price=2.0)),
        (ItemStruct, ItemStruct("pen", 2.0)),
        (ItemData, ItemData("pen", 2.0)),
        (ItemDict, {"name": "pen", "price": 2.0}),
    ],
)
async def test_a_typed_parameter_receives_the_whole_data_converted(kind: Any, expected: Any) -> None:
    app = App()

    async def handler(item: Any, sku: Param) -> Any:
        return item, sku

    handler.__annotations__["item"] = kind  # the annotation itself, not the string "kind"
    app.add_on_event_hook(handler, "item:{sku}")
    item, sku = await app.trigger_event("item:p1", data={"name": "pen", "price": 2, "other": True})
    assert (item, sku) == (expected, "p1")
    assert type(item) is type(expected)


@pytest.mark.parametrize("kind", [Item, ItemStruct, ItemData, ItemDict])
async def test_data_that_does_not_fit_raises_validation_error_and_the_handler_does_not_run(kind: Any) -> None:
    app = App()
    ran: List[Any] = []

    async def handler(item: Any) -> None:
        ran.append(item)

    handler.__annotations__["item"] = kind
    app.add_on_event_hook(handler, "item")
    with pytest.raises(ValidationError) as info:
        await app.trigger_event("item", data={"price": "cheap"})
    assert ran == []
    assert isinstance(info.value, EventDataError)
    # msgspec stops at its first error; the others report both.
    expected = [(("name",), "missing"), (("price",), "float_parsing" if kind is Item else "float_type")]
    found = [(error["loc"], error["type"]) for error in info.value.errors()]
    assert found == (expected[1:] if kind is ItemStruct else expected)
    assert all(error["msg"] for error in info.value.errors())


async def test_annotated_data_is_converted_and_plain_data_is_not() -> None:
    app = App()

    @app.on_event("pay")
    # Optional, not "str | None": evaluated at registration, on Python 3.9 too.
    async def pay(
        amount: Annotated[float, Data], raw: Data, note: Annotated[Optional[str], Data] = None  # noqa: UP045
    ) -> Any:
        return amount, raw, note

    assert await app.trigger_event("pay", data={"amount": 3, "raw": "3"}) == (3.0, "3", None)
    with pytest.raises(ValidationError) as info:
        await app.trigger_event("pay", data={"amount": "3", "raw": 1, "note": 5})
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [
        (("amount",), "float_type"),
        (("note",), "string_type"),
    ]
    # Plain Data still raises EventDataError for a missing key (not a validation error).
    with pytest.raises(EventDataError) as missing:
        await app.trigger_event("pay", data={"amount": 1})
    assert not isinstance(missing.value, ValidationError)


async def test_errors_of_every_typed_parameter_are_reported_together_before_dependencies_run() -> None:
    app = App()
    calls: List[str] = []

    async def get_db() -> str:
        calls.append("db")
        return "db"

    @app.on_event("order")
    async def order(db: Any = depend(get_db), *, item: ItemData, qty: Annotated[int, Data]) -> Any:
        return db, item, qty

    with pytest.raises(ValidationError) as info:
        await app.trigger_event("order", data={"name": "pen"})
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("price",), "missing"), (("qty",), "missing")]
    assert str(info.value) == (
        "2 validation errors: price: Field required [type=missing]; qty: Field required [type=missing]"
    )
    assert calls == []
    assert await app.trigger_event("order", data={"name": "pen", "price": 1.5, "qty": 2}) == (
        "db",
        ItemData("pen", 1.5),
        2,
    )


async def test_a_typed_parameter_with_a_default_keeps_its_default_as_before() -> None:
    app = App()
    default = ItemData("default", 0.0)

    @app.on_event("item")
    async def handler(item: ItemData = default) -> ItemData:
        return item

    assert await app.trigger_event("item", data={"name": "pen", "price": 2}) is default


async def test_pydantic_constraints_in_annotated_data_are_checked() -> None:
    app = App()

    @app.on_event("n")
    async def handler(n: Annotated[int, Data, pydantic.Field(gt=0)]) -> int:
        return n

    assert await app.trigger_event("n", data={"n": "5"}) == 5
    with pytest.raises(ValidationError) as info:
        await app.trigger_event("n", data={"n": 0})
    assert info.value.errors() == [{"loc": ("n",), "msg": "Input should be greater than 0", "type": "greater_than"}]


async def test_a_validation_failure_is_one_warning_line_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    app = App()

    @app.on_event("item")
    async def handler(item: ItemData) -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="tiny_listener"), pytest.raises(ValidationError):
        await app.trigger_event("item", data={"name": 1, "price": 2})
    [record] = [record for record in caplog.records if record.name == "tiny_listener"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("event 'item' rejected by handler handler (context ")
    assert record.getMessage().endswith("1 validation error: name: Input should be a valid string [type=string_type]")


async def test_on_error_handlers_can_take_validation_errors() -> None:
    app = App()
    seen: List[Any] = []

    @app.on_event("item")
    async def handler(item: ItemData) -> None:
        pass

    @app.on_error(ValidationError)
    async def invalid(event: Event) -> None:  # type: ignore[type-arg]
        seen.append(event.error.errors())

    assert await app.trigger_event("item", data={}) is None
    assert seen == [
        [
            {"loc": ("name",), "msg": "Field required", "type": "missing"},
            {"loc": ("price",), "msg": "Field required", "type": "missing"},
        ]
    ]


class BodyContext(Context):
    """A context whose data comes apart from the event, as an HTTP request's body does."""

    reads = 0

    async def read_event_data(self) -> Dict[str, Any]:
        BodyContext.reads += 1
        return {"name": "from body", "price": 1}


async def test_a_typed_handler_reads_empty_event_data_from_its_context() -> None:
    app = App()
    app.set_context_cls(BodyContext)

    @app.on_event("item")
    async def handler(item: ItemData, name: Data) -> Any:
        return item, name

    BodyContext.reads = 0
    assert await app.trigger_event("item") == (ItemData("from body", 1.0), "from body")
    assert await app.trigger_event("item", data={"name": "given", "price": 2}) == (ItemData("given", 2.0), "given")
    assert BodyContext.reads == 1


def test_types_that_cannot_be_validated_fail_at_registration_naming_handler_and_parameter() -> None:
    app = App()

    async def handler(item: Annotated[List[Missing], Data]) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(InjectionError, match=r"parameter 'item' of .*handler"):
        app.add_on_event_hook(handler, "x")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_dataclass_and_typed_dict_handlers_need_neither_pydantic_nor_msgspec() -> None:
    result = run_python(
        """
        import asyncio, dataclasses, sys
        from typing import Annotated, List, TypedDict
        from tiny_listener import Data, Listener, ValidationError

        class Blocker:  # as if pydantic and msgspec were not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pydantic", "pydantic_core", "msgspec"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Blocker())

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 0

        class Tags(TypedDict):
            tags: List[str]

        class App(Listener):
            async def listen(self): pass

        app = App()

        @app.on_event("p")
        async def handler(point: Point, tags: Tags, n: Annotated[int, Data]):
            return point, tags, n

        async def main():
            print(await app.trigger_event("p", data={"x": 1, "tags": ["a"], "n": 2}))
            try:
                await app.trigger_event("p", data={"x": "1", "tags": [1]})
            except ValidationError as exc:
                print(exc.errors())
        asyncio.run(main())
        print(sorted(name for name in ("pydantic", "msgspec") if name in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "(Point(x=1, y=0), {'tags': ['a']}, 2)",
        "[{'loc': ('x',), 'msg': 'Input should be a valid integer', 'type': 'int_type'}, "
        "{'loc': ('tags', 0), 'msg': 'Input should be a valid string', 'type': 'string_type'}, "
        "{'loc': ('n',), 'msg': 'Field required', 'type': 'missing'}]",
        "[]",
    ]


def test_a_type_that_needs_pydantic_names_the_extra_when_pydantic_is_missing() -> None:
    result = run_python(
        """
        import datetime, sys
        from typing import Annotated
        from tiny_listener import Data, InjectionError, Listener

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "pydantic":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Blocker())

        class App(Listener):
            async def listen(self): pass

        async def handler(day: Annotated[datetime.date, Data]):
            pass

        try:
            App().add_on_event_hook(handler, "d")
        except InjectionError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "cannot validate parameter 'day' of 'handler': 'pydantic' is not installed; install it with: "
        "pip install 'tiny-listener[pydantic]' (needed to validate date)"
    )
