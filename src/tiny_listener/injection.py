"""Handler parameter injection, planned once per handler.

A handler declares what it needs by annotation (``event: Event``, ``ctx: MyContext``,
``username: Param``, ``amount: Data``) or by default value (``db = depend(get_db)``). When a
handler is registered its signature is read once and turned into a small ``async`` function
that fetches exactly those values and calls the handler: no ``inspect`` call and no type check
happens while an event is dispatched. A parameter that cannot be resolved is reported at
registration, naming the handler and the parameter. A handler that reads nothing of its event
but the data and the path parameters also gets a function that takes those alone, so that a
broker source can run it without making an event.

Typed data: a parameter annotated with a pydantic model, a msgspec ``Struct``, a dataclass or
a ``TypedDict`` receives the whole event data converted to it, and ``amount: Annotated[int,
Data]`` the key ``amount`` converted to ``int`` (plain ``amount: Data`` stays unchecked). Their
validators are built at registration too (:mod:`tiny_listener.validation`); the plan checks
every typed parameter before any dependency runs and raises one
:class:`~tiny_listener.ValidationError` listing every field error. A context whose messages
carry their data apart from the event (an HTTP request's body) defines ``async def
read_event_data(self)``: a typed handler whose event has no data reads it from there first.
"""

from __future__ import annotations

import inspect
import sys
import typing
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Sequence, Tuple

from ._types import CoroFunc, PathParams
from .errors import EventDataError, FieldError, InjectionError, PathParamsError, ValidationError
from .failures import wait_for
from .optional import MissingExtraError
from .validation import UnsupportedType, Validator, field_error, is_payload_type, validator_for

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
DataInvoker = Callable[[Any, PathParams], Awaitable[Any]]
"""``invoke_data(data, params)``: the same, for a handler that reads nothing of its event but
the data and the path parameters, called without an event (see ``Listener._event_here``)."""


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


@dataclass(frozen=True)
class DataField:
    """A key of the event data that a handler reads (``amount: Data``): its ``validator``
    (None for plain, unchecked ``Data``) and whether the event must carry it."""

    name: str
    validator: Validator | None
    required: bool


@dataclass(frozen=True)
class Payload:
    """What a handler (with its dependencies) reads from the event data: the validators of the
    parameters that take it whole (``models``) and the keys it reads one by one (``fields``)."""

    models: Tuple[Validator, ...] = ()
    fields: Tuple[DataField, ...] = ()

    @property
    def typed(self) -> bool:
        """True if any of it is validated."""
        return bool(self.models) or any(field.validator is not None for field in self.fields)

    def __add__(self, other: Payload) -> Payload:
        names = {field.name for field in self.fields}
        return Payload(
            self.models + tuple(model for model in other.models if model not in self.models),
            self.fields + tuple(field for field in other.fields if field.name not in names),
        )


class Hook:
    """An ``async`` function called with injected parameters: ``await hook(event, params)``.

    ``payload`` says what it reads from the event data (see :class:`Payload`).
    """

    def __init__(self, fn: CoroFunc, timeout: float | None = None) -> None:
        self.fn: CoroFunc = check_coro_func(fn)
        self.timeout = timeout
        plan = _plan(fn)
        self._invoke: Invoker = plan.invoke
        self.payload = plan.payload
        # None if the handler reads its event, its context or a dependency.
        self._invoke_data: DataInvoker | None = plan.invoke_data
        # True if, given no data, the handler reads it from the event's context first
        # (``read_event_data``, see the module documentation): then it needs the event.
        self._reads_context_if_no_data = plan.reads_context_if_no_data

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
    try:
        overrides = ctx.listener.dependency_overrides
    except AttributeError:  # a context with no listener, as when a Depends is called directly
        overrides = None
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


def _failed(errors: List[FieldError] | None, new: Sequence[FieldError], key: str | None) -> List[FieldError]:
    """Add the field errors ``new`` (of data key ``key``, or of the whole data) to ``errors``."""
    found = errors if errors is not None else []
    if key is None:
        found.extend(new)
    else:
        found.extend(FieldError(loc=(key, *error["loc"]), msg=error["msg"], type=error["type"]) for error in new)
    return found


_MISSING_FIELD = [field_error("Field required", "missing")]


def _data_reader(event: Event[Any]) -> Callable[[], Awaitable[Any]] | None:
    """The context's ``read_event_data`` method, if it has one (an HTTP request)."""
    return getattr(event.ctx, "read_event_data", None)


def _resolve_annotation(fn: Callable[..., Any], name: str, param: inspect.Parameter) -> Any:
    """``param``'s annotation, evaluated in the module of ``fn`` (named ``name`` in errors) if
    it is a string (``from __future__ import annotations``). Raises :class:`InjectionError` if
    it cannot be: ignoring it would silently inject the parameter's default instead of, say,
    ``Annotated[str | None, Data]`` (which Python < 3.10 cannot evaluate)."""
    annotation = param.annotation
    if isinstance(annotation, str):
        namespace = getattr(inspect.unwrap(fn), "__globals__", {})
        try:
            annotation = eval(annotation, dict(namespace))  # noqa: S307 - the handler's own annotation
        except Exception as exc:
            hint = ""
            if isinstance(exc, NameError):
                hint = " (a name the handler's module does not define at its top level)"
            elif isinstance(exc, TypeError) and "|" in annotation and sys.version_info < (3, 10):
                hint = " (Python < 3.10 cannot evaluate 'X | Y': write Optional[X] or Union[X, Y])"
            raise InjectionError(
                f"cannot inject parameter {param.name!r} of {name!r}: its annotation {annotation!r} cannot be "
                f"evaluated: {exc!r}{hint}"
            ) from None
    return annotation


def _is_untyped(tp: Any) -> bool:
    return tp is Any or tp is object or tp is inspect.Parameter.empty


class _Plan:
    """The source lines and names of one handler's invoker, filled parameter by parameter."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.env: Dict[str, Any] = {
            "_fn": fn,
            "_resolve": resolve_dependency,
            "_missing_param": _missing_param,
            "_missing_data": _missing_data,
        }
        self.checks: List[str] = []  # typed parameters: run first, every error collected
        self.lines: List[str] = []  # the others, in order
        self.payload = Payload()
        # Whether a parameter is the event, its context, its listener or a dependency (which
        # is given the event): if not, the handler can also be called without an event.
        self.reads_event = False

    @property
    def name(self) -> str:
        return str(getattr(self.fn, "__qualname__", self.fn))

    def validator(self, tp: Any, param: str) -> Validator:
        try:
            return validator_for(tp)
        except (UnsupportedType, MissingExtraError) as exc:
            raise InjectionError(f"cannot validate parameter {param!r} of {self.name!r}: {exc}") from exc

    def add_model(self, index: int, validator: Validator) -> None:
        """Parameter ``index`` receives the whole event data, validated."""
        self.env.update({f"_check{index}": validator.check, f"_fail{index}": validator.failures})
        self.env[f"_read{index}"] = validator.field_errors
        self.checks += [
            "try:",
            f"    _v{index} = _check{index}(_data)",
            f"except _fail{index} as _e:",
            f"    _errors = _failed(_errors, _read{index}(_e), None)",
        ]
        self.payload += Payload(models=(validator,))

    def add_typed_field(self, index: int, name: str, validator: Validator, has_default: bool) -> None:
        """Parameter ``index`` receives the data key ``name``, validated."""
        self.env.update({f"_check{index}": validator.check, f"_fail{index}": validator.failures})
        self.env[f"_read{index}"] = validator.field_errors
        self.checks += [
            "try:",
            f"    _r{index} = _data[{name!r}]",
            "except (KeyError, TypeError):",
            f"    _v{index} = _d{index}" if has_default else f"    _errors = _failed(_errors, _MISSING, {name!r})",
            "else:",
            "    try:",
            f"        _v{index} = _check{index}(_r{index})",
            f"    except _fail{index} as _e:",
            f"        _errors = _failed(_errors, _read{index}(_e), {name!r})",
        ]
        self.payload += Payload(fields=(DataField(name, validator, not has_default),))

    def data_source(self, args: List[str]) -> str | None:
        """The source of ``invoke_data(_data, params)``, which calls the handler with what it
        reads of ``_data`` and ``params`` (no event), or None if the handler reads more of its
        event. It never reads data from the context: typed data that is empty goes through
        ``invoke``."""
        if self.reads_event:
            return None
        # A plan that does not read the event reads only ``event.data`` (plain Data lines):
        # the same lines, on the data given.
        lines = [line.replace("event.data", "_data") for line in self.lines]
        call = f"return _fn({', '.join(args)})"
        return _function("def invoke_data(_data, params):", [*self.checking(), *lines, call])

    def checking(self) -> List[str]:
        """The lines that check the typed parameters against ``_data``, raising one
        ``ValidationError`` with every field error."""
        if not self.checks:
            return []
        self.env.update({"_failed": _failed, "_MISSING": _MISSING_FIELD, "_invalid": ValidationError})
        return ["_errors = None", *self.checks, "if _errors is not None:", "    raise _invalid(_errors)"]

    def source(self, args: List[str]) -> str:
        """The invoker's source: ``invoke(event, params)``, and with typed parameters the
        ``invoke_reading`` it hands over to when the data is to be read from the context."""
        call = f"_fn({', '.join(args)})"
        lines = self.lines
        if not self.checks:
            if any("await " in line for line in lines):
                return _function("async def invoke(event, params):", [*lines, f"return await {call}"])
            # Nothing to await before the call: return the handler's coroutine itself, so that
            # dispatch awaits it directly instead of through one more coroutine frame.
            return _function("def invoke(event, params):", [*lines, f"return {call}"])
        self.env["_reader"] = _data_reader
        body = [*self.checking(), *lines]
        if any("await " in line for line in lines):
            prologue = [
                "_data = event.data",
                "if not _data:",
                "    _load = _reader(event)",
                "    if _load is not None:",
                "        _data = event.data = await _load()",
            ]
            return _function("async def invoke(event, params):", [*prologue, *body, f"return await {call}"])
        # The usual case stays synchronous; only an event whose data is to be read from its
        # context (an HTTP request's body) goes through a coroutine that awaits it first.
        prologue = [
            "_data = event.data",
            "if not _data:",
            "    _load = _reader(event)",
            "    if _load is not None:",
            "        return invoke_reading(event, params, _load)",
        ]
        reading = ["_data = event.data = await _load()", *body, f"return await {call}"]
        return _function("def invoke(event, params):", [*prologue, *body, f"return {call}"]) + _function(
            "async def invoke_reading(event, params, _load):", reading
        )


def _function(head: str, body: List[str]) -> str:
    return head + "\n" + "".join(f"    {line}\n" for line in body)


def _plan_parameter(plan: _Plan, param: inspect.Parameter, index: int) -> None:
    """Add what binds ``_v{index}`` for one parameter to ``plan``."""
    from .context import Context  # the core modules import this one: import them lazily
    from .event import Event
    from .listener import Listener

    fn, env = plan.fn, plan.env
    name = param.name
    var = f"_v{index}"
    default = param.default
    if isinstance(default, Depends):
        plan.reads_event = True
        env[f"_dep{index}"] = default
        plan.lines.append(f"{var} = await _resolve(_dep{index}, event, params)")
        plan.payload += default.payload
        return

    annotation = _resolve_annotation(fn, plan.name, param)
    markers: Tuple[Any, ...] = ()
    declared = annotation  # the type itself, for validation
    if typing.get_origin(annotation) is typing.Annotated:
        markers = annotation.__metadata__
        declared = annotation.__origin__
        annotation = typing.get_origin(declared) or declared
    has_default = default is not inspect.Parameter.empty
    if has_default:
        env[f"_d{index}"] = default

    if annotation is Param or Param in markers:
        if has_default:
            plan.lines.append(f"{var} = params.get({name!r}, _d{index})")
            return
        plan.lines += [
            "try:",
            f"    {var} = params[{name!r}]",
            "except KeyError:",
            f"    raise _missing_param(params, {name!r}) from None",
        ]
        return
    if annotation is Data or Data in markers:
        other_markers = tuple(marker for marker in markers if marker is not Data)
        if other_markers:  # Annotated[int, Data, Field(gt=0)]: the constraints are the type's
            declared = typing.Annotated[(declared, *other_markers)]
        if annotation is not Data and not _is_untyped(declared):
            plan.add_typed_field(index, name, plan.validator(declared, name), has_default)
            return
        # Plain Data: the value as it came, unchecked (as in 1.2).
        plan.payload += Payload(fields=(DataField(name, None, not has_default),))
        if has_default:
            plan.lines.append(f"{var} = event.data.get({name!r}, _d{index})")
            return
        plan.lines += [
            "try:",
            f"    {var} = event.data[{name!r}]",
            "except (KeyError, TypeError):",
            f"    raise _missing_data(event.data, {name!r}) from None",
        ]
        return
    origin = typing.get_origin(annotation)
    if inspect.isclass(origin):  # Event[MyContext], Listener[MyContext]: the class itself
        annotation = origin
    if inspect.isclass(annotation):
        if issubclass(annotation, Event):
            plan.reads_event = True
            plan.lines.append(f"{var} = event")
            return
        if issubclass(annotation, Context):
            plan.reads_event = True
            plan.lines.append(f"{var} = event.ctx")
            return
        if issubclass(annotation, Listener):
            plan.reads_event = True
            plan.lines.append(f"{var} = event.listener")
            return
        # With a default the parameter keeps it, as any parameter did in 1.2 (``config: Config =
        # DEFAULT`` must not start reading the event data).
        if is_payload_type(annotation) and annotation is declared and not has_default:
            plan.add_model(index, plan.validator(annotation, name))
            return
    if has_default:
        plan.lines.append(f"{var} = _d{index}")
        return
    raise InjectionError(
        f"cannot inject parameter {name!r} of {plan.name!r}: annotate it with Event, a Context "
        "class, Param, Data, a pydantic model, msgspec Struct, dataclass or TypedDict, give it a "
        "default, or use depend(...)"
        + (f" (its annotation {param.annotation!r} is not one of these)" if param.annotation is not param.empty else "")
    )


@dataclass(frozen=True)
class _Planned:
    """What :func:`_plan` makes of a handler's signature (see :class:`Hook`)."""

    invoke: Invoker
    payload: Payload
    invoke_data: DataInvoker | None
    reads_context_if_no_data: bool


def _plan(fn: CoroFunc) -> _Planned:
    """Compile ``fn``'s signature into ``invoke(event, params)`` that calls it and, if it reads
    nothing of the event but its data, ``invoke_data(data, params)``; say what it reads from
    the event data.

    Raises :class:`InjectionError` (a ``TypeError``) naming the handler and the parameter that
    cannot be resolved or validated.
    """
    plan = _Plan(fn)
    args: List[str] = []
    for index, param in enumerate(inspect.signature(fn).parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        _plan_parameter(plan, param, index)
        args.append(f"{param.name}=_v{index}" if param.kind == param.KEYWORD_ONLY else f"_v{index}")
    source = plan.source(args)
    data_source = plan.data_source(args)
    # Generated once per handler: the fastest call path, with no per-event loop over parameters.
    env = plan.env
    exec(compile(source, f"<tiny_listener plan for {plan.name}>", "exec"), env)  # noqa: S102
    invoke: Invoker = env["invoke"]
    invoke.__doc__ = source
    invoke_data: DataInvoker | None = None
    if data_source is not None:
        exec(compile(data_source, f"<tiny_listener data plan for {plan.name}>", "exec"), env)  # noqa: S102
        invoke_data = env["invoke_data"]
        invoke_data.__doc__ = data_source
    return _Planned(invoke, plan.payload, invoke_data, bool(plan.checks))
