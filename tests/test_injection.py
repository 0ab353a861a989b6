from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import pytest

from tiny_listener import (
    Context,
    Data,
    Depends,
    Event,
    EventDataError,
    InjectionError,
    Listener,
    Param,
    PathParamsError,
    depend,
)
from tiny_listener.testing import TestClient


class App(Listener[Context]):
    async def listen(self) -> None:
        await self.wait_for_shutdown()


class MyContext(Context):
    def hello(self) -> str:
        return f"hello from {self.cid}"


async def test_event_context_param_and_data_are_injected() -> None:
    app = App()
    app.set_context_cls(MyContext)

    @app.on_event("user:{name}:{age:int}")
    async def handler(event: Event, ctx: MyContext, name: Param, age: Param, note: Data) -> Any:
        return event.path, ctx.hello(), name, age, note

    path, greeting, name, age, note = await app.trigger_event("user:bob:42", cid="c1", data={"note": "hi"})
    assert (path, greeting, name, age, note) == ("user:bob:42", "hello from c1", "bob", 42, "hi")


async def test_keyword_only_and_positional_only_parameters() -> None:
    app = App()

    @app.on_event("x/{a}")
    async def handler(a: Param, /, *, b: Data, c: int = 3) -> Any:
        return a, b, c

    assert await app.trigger_event("x/1", data={"b": 2}) == ("1", 2, 3)


async def test_listener_annotation_injects_the_listener() -> None:
    app = App()

    @app.on_event()
    async def handler(listener: App) -> Any:
        return listener

    assert await app.trigger_event("any") is app


async def test_missing_path_param_raises_path_params_error() -> None:
    app = App()

    @app.on_event("x")
    async def handler(name: Param) -> None: ...

    with pytest.raises(PathParamsError, match="'name'"):
        await app.trigger_event("x")


async def test_missing_data_raises_event_data_error() -> None:
    app = App()

    @app.on_event("x")
    async def handler(amount: Data) -> None: ...

    with pytest.raises(EventDataError, match="'amount'"):
        await app.trigger_event("x", data={"other": 1})


async def test_defaults_apply_for_missing_param_and_data() -> None:
    app = App()

    @app.on_event("x")
    async def handler(name: Param = "anon", amount: Data = 0) -> Any:
        return name, amount

    assert await app.trigger_event("x") == ("anon", 0)


async def test_annotated_markers_keep_the_real_type() -> None:
    app = App()

    @app.on_event("n/{n:int}")
    async def handler(n: Annotated[int, Param], note: Annotated[str, Data]) -> Any:
        return n + 1, note

    assert await app.trigger_event("n/1", data={"note": "x"}) == (2, "x")


def test_sync_handler_is_rejected_at_registration() -> None:
    app = App()

    def handler() -> None: ...

    with pytest.raises(TypeError, match="coroutine function"):
        app.add_on_event_hook(handler, "x")  # type: ignore[arg-type]


def test_unresolvable_parameter_fails_at_registration_naming_handler_and_parameter() -> None:
    app = App()

    with pytest.raises(InjectionError, match=r"parameter 'mystery' of .*handler"):

        @app.on_event("x")
        async def handler(mystery) -> None:  # type: ignore[no-untyped-def]
            ...

    with pytest.raises(TypeError, match=r"parameter 'n' .*annotation"):

        @app.on_event("y")
        async def other(n: int) -> None: ...


def test_an_annotation_that_cannot_be_evaluated_fails_at_registration_even_with_a_default() -> None:
    # A string annotation (``from __future__ import annotations``) naming something the
    # handler's module does not define: ignoring it would always inject the default.
    app = App()

    with pytest.raises(InjectionError) as failed:

        @app.on_event("x")
        async def handler(note: Annotated[Undefined, Data] = None) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    assert str(failed.value) == (
        "cannot inject parameter 'note' of 'test_an_annotation_that_cannot_be_evaluated_fails_at_registration_even_"
        "with_a_default.<locals>.handler': its annotation 'Annotated[Undefined, Data]' cannot be evaluated: "
        "NameError(\"name 'Undefined' is not defined\") (a name the handler's module does not define at its top level)"
    )


@pytest.mark.skipif(sys.version_info >= (3, 10), reason="Python 3.10 evaluates 'X | None'")
def test_x_or_none_on_python_3_9_fails_at_registration_with_a_hint() -> None:
    app = App()

    with pytest.raises(InjectionError, match=r"its annotation 'Annotated\[str \| None, Data\]' cannot be evaluated: "
                       r"TypeError\(.*\) \(Python < 3.10 cannot evaluate 'X \| Y': write Optional\[X\]"):

        @app.on_event("x")
        async def handler(note: Annotated[str | None, Data] = None) -> None: ...


async def test_dependencies_nest_and_are_cached_per_context() -> None:
    app = App()
    calls: list[str] = []

    async def get_config() -> dict[str, int]:
        calls.append("config")
        return {"scale": 10}

    async def get_service(event: Event, config: dict[str, int] = depend(get_config)) -> int:
        calls.append("service")
        return config["scale"] * 2

    @app.on_event("x/{n:int}")
    async def handler(n: Param, service: int = depend(get_service), config: Any = depend(get_config)) -> Any:
        return n * service, config["scale"]

    assert await app.trigger_event("x/2", cid="a") == (40, 10)
    assert await app.trigger_event("x/3", cid="a") == (60, 10)
    assert calls == ["config", "service"]  # cached in context "a"
    assert await app.trigger_event("x/1", cid="b") == (20, 10)
    assert calls == ["config", "service", "config", "service"]
    assert app.get_ctx("a").cache[Depends(get_config)] == {"scale": 10}


async def test_dependency_without_cache_runs_every_time() -> None:
    app = App()
    counter = iter(range(100))

    async def next_number() -> int:
        return next(counter)

    @app.on_event("x")
    async def handler(n: int = depend(next_number, use_cache=False)) -> int:
        return n

    assert [await app.trigger_event("x", cid="same") for _ in range(3)] == [0, 1, 2]


async def test_dependency_timeout() -> None:
    app = App()
    never = asyncio.Event()

    async def slow() -> None:
        await never.wait()

    @app.on_event("x")
    async def handler(value: Any = depend(slow, timeout=0.01)) -> None: ...

    with pytest.raises(asyncio.TimeoutError):
        await app.trigger_event("x")


async def test_dependency_overrides_apply_to_nested_dependencies() -> None:
    app = App()

    async def get_db() -> str:
        return "real-db"

    async def get_repo(db: str = depend(get_db)) -> str:
        return f"repo({db})"

    @app.on_event("x")
    async def handler(repo: str = depend(get_repo)) -> str:
        return repo

    async def fake_db() -> str:
        return "fake-db"

    app.dependency_overrides[get_db] = fake_db
    async with TestClient(app) as client:
        assert await client.trigger("x") == "repo(fake-db)"
        app.dependency_overrides.clear()
        assert await client.trigger("x") == "repo(real-db)"


async def test_string_annotations_are_resolved_in_the_handler_module() -> None:
    # This module uses ``from __future__ import annotations``: every annotation is a string.
    app = App()

    @app.on_event("s/{x}")
    async def handler(event: Event, x: Param, ctx: Context) -> Any:
        return event.path, x, ctx.cid

    assert await app.trigger_event("s/1", cid="k") == ("s/1", "1", "k")


async def test_subscripted_generic_annotations_inject_the_class() -> None:
    app = App()
    app.set_context_cls(MyContext)

    @app.on_event("x")
    async def handler(event: Event[MyContext], listener: Listener[MyContext]) -> Any:
        return event.ctx.hello(), listener

    greeting, listener = await app.trigger_event("x", cid="g")
    assert greeting == "hello from g" and listener is app
