"""What an app's routes say about the messages it takes: the common ground of its AsyncAPI
and OpenAPI documents.

For each route: its address with the convertors left out (``order/{id:int}`` becomes
``order/{id}``), each path parameter with its convertor and a JSON Schema of its values, the
JSON Schema of the event data its handler (and the handler's dependencies) reads, and the
handler's docstring. Named schemas (models, dataclasses...) go to one
:class:`~tiny_listener.validation.SchemaRegistry`, shared by every route.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from ..convertors import CONVERTOR_TYPES
from ..injection import Payload
from ..listener import Listener
from ..routing import PARAM_REGEX, Route
from ..validation import JsonSchema, SchemaRegistry

# What each built-in convertor matches, as JSON Schema.
CONVERTOR_SCHEMAS: Dict[str, JsonSchema] = {
    "str": {"type": "string", "pattern": "^[^/]+$"},
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "path": {"type": "string"},
    "uuid": {"type": "string", "format": "uuid"},
}


@dataclass(frozen=True)
class RouteParameter:
    """A path parameter: its ``name``, ``convertor`` kind, the convertor's ``regex`` and the
    JSON ``schema`` of the values handlers receive."""

    name: str
    convertor: str
    regex: str
    schema: JsonSchema


@dataclass(frozen=True)
class RouteContract:
    """One route as a contract: ``name`` (the handler's), ``address`` (the path with bare
    ``{name}`` parameters), its ``parameters``, the JSON Schema of the data it reads
    (``payload``, None if it reads none), whether any of that is validated (``typed``), and the
    handler docstring's first line (``summary``) and rest (``description``)."""

    route: Route
    name: str
    address: str
    parameters: Tuple[RouteParameter, ...]
    payload: JsonSchema | None
    typed: bool
    summary: str | None
    description: str | None


def route_contracts(listener: Listener[Any], registry: SchemaRegistry) -> List[RouteContract]:
    """Return the contract of every route of ``listener``, in match order, putting the named
    schemas they use in ``registry``."""
    return [route_contract(route, registry) for route in listener.routes.values()]


def route_contract(route: Route, registry: SchemaRegistry) -> RouteContract:
    """Return the contract of one route (see :class:`RouteContract`)."""
    parameters = []
    for match in PARAM_REGEX.finditer(route.path):
        name, kind = match.group(1), (match.group(2) or ":str")[1:]
        regex = CONVERTOR_TYPES[kind].regex
        schema = CONVERTOR_SCHEMAS.get(kind) or {"type": "string", "pattern": f"^(?:{regex})$"}
        parameters.append(RouteParameter(name, kind, regex, dict(schema)))
    address = PARAM_REGEX.sub(lambda match: "{" + match.group(1) + "}", route.path)
    doc = inspect.getdoc(route.fn) or ""
    summary, _, description = doc.strip().partition("\n")
    payload: Payload = route.hook.payload
    return RouteContract(
        route=route,
        name=route.name,
        address=address,
        parameters=tuple(parameters),
        payload=payload_schema(payload, registry),
        typed=payload.typed,
        summary=summary.strip() or None,
        description=description.strip() or None,
    )


def payload_schema(payload: Payload, registry: SchemaRegistry) -> JsonSchema | None:
    """Return the JSON Schema of the data ``payload`` describes, or None if it reads none: a
    model's schema, an object with a property per ``Data`` key (any value for plain ``Data``),
    or ``allOf`` both."""
    parts = [model.schema(registry) for model in payload.models]
    if payload.fields:
        properties = {
            field.name: field.validator.schema(registry) if field.validator is not None else {}
            for field in payload.fields
        }
        fields: JsonSchema = {"type": "object", "properties": properties}
        required = [field.name for field in payload.fields if field.required]
        if required:
            fields["required"] = required
        parts.append(fields)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"allOf": parts}
