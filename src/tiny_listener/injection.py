"""Handler parameter injection, planned once per handler.

A handler declares what it needs by annotation (``event: Event``, ``ctx: MyContext``,
``username: Param``, ``amount: Data``) or by default value (``db = depend(get_db)``). When a
handler is registered its signature is read once and turned into a small ``async`` function
that fetches exactly those values and calls the handler: no ``inspect`` call and no type check
happens while an event is dispatched. A parameter that cannot be resolved is reported at
registration, naming the handler and the parameter.
"""

from __future__ import annotations

import inspect
import typing
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Tuple

from ._types import CoroFunc, PathParams
from .errors import EventDataError, InjectionError, PathParamsError
from .failures import wait_for

if TYPE_CHECKING:
    from .event import Event

    # For type checkers an injected value is of any type, as in 1.2 (``Param: Any``).
    Param = Any
    Data = Any
else:

    class Param:
        """Annotation: inject the path parameter of the same name (``username: Param``)."""

    class Data:
        """Annotation: inject ``event.data[name]`` for the parameter's name (``amount: Data``)."""


Invoker = Callable[["Event[Any]", PathParams], Awaitable[Any]]
"""``invoke(event, params)``: returns an awaitable of the handler's result."""


def check_coro_func(fn: Callable[..., Any]) -> CoroFunc:
    """Return ``fn`` if it is an ``async def`` function; raise ``TypeError`` otherwise."""
    # An object whose __call__ is async counts too (as with 1.2, which used asyncio.iscoroutinefunction).
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004
        return fn
    name = getattr(fn, "__qualname__", repr(fn))
    raise TypeError(
        f"{name} must be a coroutine function (async def), such as:\n\n"
        "    @app.on_event()\n    async def foo():\n        ...\n"
    )


class Hook:
    """An ``async`` function called with injected parameters: ``await hook(event, params)``."""

    def __init__(self, fn: CoroFunc, timeout: float | None = None) -> None:
        self.fn: CoroFunc = check_coro_func(fn)
        self.timeout = timeout
        self._invoke: Invoker = build_invoker(fn)

    async def __call__(self, event: Event[Any], params: PathParams) -> Any:
        return await self._invoke(event, params)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({getattr(self.fn, '__name__', self.fn)!r})"

    # Equal hooks wrap the same function: a ``Depends`` is a cache key in ``ctx.cache``.
    def __hash__(self) -> int:
        return hash(self.fn)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hook) and other.fn == self.fn


class Depends(Hook):
    """Default value that injects the result of another ``async`` function.

    The dependency receives injected parameters itself, so dependencies nest. With
    ``use_cache`` its result is computed once per context; ``timeout`` bounds each call.
    """

    def __init__(self, fn: CoroFunc, use_cache: bool = True, timeout: float | None = None) -> None:
        super().__init__(fn, timeout)
        self.use_cache = use_cache


def depend(fn: CoroFunc, use_cache: bool = True, timeout: float | None = None) -> Any:
    """Return a :class:`Depends` for ``fn``; typed ``Any`` so it can default any parameter."""
    return Depends(fn, use_cache, timeout)


async def resolve_dependency(dep: Depends, event: Event[Any], params: PathParams) -> Any:
    """Return the value of ``dep`` for this event: cached per context, overridable in tests."""
    ctx = event.ctx
    if dep.use_cache and dep in ctx.cache:
        return ctx.cache[dep]
    target: Hook = dep
    overrides = ctx.listener.dependency_overrides
    if overrides and dep.fn in overrides:
        target = _override_hook(overrides[dep.fn])
    if dep.timeout is None:
        value = await target(event, params)
    else:
        value = await wait_for(target(event, params), dep.timeout)
    ctx.cache[dep] = value
    return value


# Weak keys: an override (often a test's closure) is forgotten with its function.
_override_hooks: weakref.WeakKeyDictionary[Callable[..., Any], Hook] = weakref.WeakKeyDictionary()


def _override_hook(fn: CoroFunc) -> Hook:
    hook = _override_hooks.get(fn)
    if hook is None:
        hook = _override_hooks[fn] = Hook(fn)
    return hook


def _missing_param(params: PathParams, name: str) -> PathParamsError:
    return PathParamsError(f"path param {name!r} is not defined by the route, allowed: {sorted(params)}")


def _missing_data(data: Any, name: str) -> EventDataError:
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    return EventDataError(f"event data {name!r} is missing, allowed: {keys}")


def _resolve_annotation(fn: Callable[..., Any], param: inspect.Parameter) -> Any:
    annotation = param.annotation
    if isinstance(annotation, str):
        # ``from __future__ import annotations`` leaves strings; evaluate in the handler's module.
        namespace = getattr(inspect.unwrap(fn), "__globals__", {})
        try:
            annotation = eval(annotation, dict(namespace))  # noqa: S307 - the handler's own annotation
        except Exception:
            return inspect.Parameter.empty
    return annotation


def _plan_parameter(fn: Callable[..., Any], param: inspect.Parameter, index: int, env: Dict[str, Any]) -> List[str]:
    """Return the source lines that bind ``_v{index}`` for one parameter."""
    from .context import Context  # the core modules import this one: import them lazily
    from .event import Event
    from .listener import Listener

    name = param.name
    var = f"_v{index}"
    default = param.default
    if isinstance(default, Depends):
        env[f"_dep{index}"] = default
        return [f"{var} = await _resolve(_dep{index}, event, params)"]

    annotation = _resolve_annotation(fn, param)
    markers: Tuple[Any, ...] = ()
    if typing.get_origin(annotation) is typing.Annotated:
        markers = annotation.__metadata__
        annotation = typing.get_origin(annotation.__origin__) or annotation.__origin__
    has_default = default is not inspect.Parameter.empty
    if has_default:
        env[f"_d{index}"] = default

    if annotation is Param or Param in markers:
        if has_default:
            return [f"{var} = params.get({name!r}, _d{index})"]
        return [
            "try:",
            f"    {var} = params[{name!r}]",
            "except KeyError:",
            f"    raise _missing_param(params, {name!r}) from None",
        ]
    if annotation is Data or Data in markers:
        if has_default:
            return [f"{var} = event.data.get({name!r}, _d{index})"]
        return [
            "try:",
            f"    {var} = event.data[{name!r}]",
            "except (KeyError, TypeError):",
            f"    raise _missing_data(event.data, {name!r}) from None",
        ]
    origin = typing.get_origin(annotation)
    if inspect.isclass(origin):  # Event[MyContext], Listener[MyContext]: the class itself
        annotation = origin
    if inspect.isclass(annotation):
        if issubclass(annotation, Event):
            return [f"{var} = event"]
        if issubclass(annotation, Context):
            return [f"{var} = event.ctx"]
        if issubclass(annotation, Listener):
            return [f"{var} = event.listener"]
    if has_default:
        return [f"{var} = _d{index}"]
    raise InjectionError(
        f"cannot inject parameter {name!r} of {getattr(fn, '__qualname__', fn)!r}: annotate it with "
        "Event, a Context class, Param or Data, give it a default, or use depend(...)"
        + (f" (its annotation {param.annotation!r} is not one of these)" if param.annotation is not param.empty else "")
    )


def build_invoker(fn: CoroFunc) -> Invoker:
    """Compile ``fn``'s signature into ``async def invoke(event, params)`` that calls it.

    Raises :class:`InjectionError` (a ``TypeError``) naming the handler and the parameter that
    cannot be resolved.
    """
    env: Dict[str, Any] = {
        "_fn": fn,
        "_resolve": resolve_dependency,
        "_missing_param": _missing_param,
        "_missing_data": _missing_data,
    }
    body: List[str] = []
    args: List[str] = []
    for index, param in enumerate(inspect.signature(fn).parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        body.extend(_plan_parameter(fn, param, index, env))
        args.append(f"{param.name}=_v{index}" if param.kind == param.KEYWORD_ONLY else f"_v{index}")
    call = f"_fn({', '.join(args)})"
    if any("await " in line for line in body):
        source = "async def invoke(event, params):\n"
        body.append(f"return await {call}")
    else:
        # Nothing to await before the call: return the handler's coroutine itself, so that
        # dispatch awaits it directly instead of through one more coroutine frame.
        source = "def invoke(event, params):\n"
        body.append(f"return {call}")
    source += "".join(f"    {line}\n" for line in body)
    # Generated once per handler: the fastest call path, with no per-event loop over parameters.
    exec(compile(source, f"<tiny_listener plan for {getattr(fn, '__qualname__', fn)}>", "exec"), env)  # noqa: S102
    invoke: Invoker = env["invoke"]
    invoke.__doc__ = source
    return invoke
