"""Results that become messages: where a handler's return value is published.

``@app.on_event("orders.{id}", publish_to="invoices.{id}")`` publishes what the handler returns
to ``invoices.<id>``: the destination is a template whose ``{name}`` fields are the route's
path parameters. It is checked when the route is registered (a field that is not a path
parameter is a :class:`~tiny_listener.RouteError`) and filled for every event with the event's
parameters. Broker sources publish it (see :mod:`tiny_listener.sources.broker`) after the
handler succeeded and before the message is acknowledged.

A result is sent as plain data: a pydantic model, msgspec ``Struct`` or dataclass is turned
into the dict the codec encodes (:func:`result_data`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping, Tuple

from .errors import RouteError
from .validation import is_msgspec_struct, is_pydantic_model

PUBLISH_TO_OPT = "publish_to"
"""The ``on_event`` option naming a route's destination."""

_FIELD = re.compile(r"{([^{}]*)}")
_NAME = re.compile(r"[a-zA-Z_]\w*\Z")
_PLAIN = (dict, list, str, int, float, bool, bytes, type(None))


class Destination:
    """The destination template of a route: ``template`` with ``{name}`` fields, each one of
    the route's path parameters.

    Raises :class:`~tiny_listener.RouteError` for a template that is empty or not a string,
    has a brace outside a ``{name}`` field, or names a field that is not one of ``params``.
    """

    __slots__ = ("fields", "template")

    def __init__(self, template: object, route_path: str, params: Iterable[str]) -> None:
        if not isinstance(template, str) or not template:
            raise RouteError(f"publish_to of route {route_path!r} must be a non-empty string, not {template!r}")
        known = list(params)
        fields = []
        for found in _FIELD.finditer(template):
            name = found.group(1)
            if not _NAME.match(name):
                raise RouteError(
                    f"publish_to {template!r} of route {route_path!r}: {{{name}}} is not a path parameter name"
                )
            if name not in known:
                have = ", ".join(known) if known else "none"
                raise RouteError(
                    f"publish_to {template!r} of route {route_path!r} uses {{{name}}}, which is not a path "
                    f"parameter of the route (it has: {have})"
                )
            fields.append(name)
        if "{" in _FIELD.sub("", template) or "}" in _FIELD.sub("", template):
            raise RouteError(f"publish_to {template!r} of route {route_path!r} has an unmatched brace")
        self.template = template
        self.fields: Tuple[str, ...] = tuple(fields)

    def build(self, params: Mapping[str, Any]) -> str:
        """Return the destination of an event whose path parameters are ``params`` (each
        parameter's value as text)."""
        if not self.fields:
            return self.template
        return self.template.format_map(params)

    def __repr__(self) -> str:
        return f"Destination({self.template!r})"


def result_data(result: Any) -> Any:
    """Return a handler's result as the plain data a codec encodes: a pydantic model's
    ``model_dump(mode="json")``, a msgspec ``Struct``'s ``msgspec.to_builtins``, a dataclass's
    ``dataclasses.asdict``; any other value as it is."""
    if isinstance(result, _PLAIN):
        return result
    cls = type(result)
    if is_pydantic_model(cls):
        return result.model_dump(mode="json")
    if is_msgspec_struct(cls):
        import msgspec  # present: the result is one of its Structs

        return msgspec.to_builtins(result)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result
