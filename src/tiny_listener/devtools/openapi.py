"""The OpenAPI 3.1 document of an HTTP app, for ``tiny-listener openapi MODULE:ATTR``.

Made from the same route contracts as the AsyncAPI document: a path item per ``METHOD:/path``
route (routes without a method prefix, such as a catch-all, are left out: OpenAPI has no way
to say "any method, any path"), its path parameters with their convertor's schema, the JSON
body its handler declares as ``requestBody``, and a ``422`` response in FastAPI's shape when
anything of it is validated.
"""

from __future__ import annotations

from typing import Any, Dict

from ..validation import JsonSchema, SchemaRegistry
from .asyncapi import Document
from .contract import RouteContract, route_contracts

OPENAPI_VERSION = "3.1.0"
OPENAPI_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")

# The body of a 422 answer (see tiny_listener.http.responses.validation_error_body).
VALIDATION_ERROR_SCHEMAS: Dict[str, JsonSchema] = {
    "ValidationError": {
        "title": "ValidationError",
        "type": "object",
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
        "required": ["loc", "msg", "type"],
    },
    "HTTPValidationError": {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {"detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}},
        "required": ["detail"],
    },
}


def openapi_document(
    listener: Any, *, title: str | None = None, version: str = "1.0.0", description: str | None = None
) -> Document:
    """Return the OpenAPI 3.1 document of an :class:`~tiny_listener.http.HTTPListener`'s
    routes (see the module docstring); ``title`` defaults to the listener's class name.

    Raises ``TypeError`` for a listener that is not an HTTP listener.
    """
    from ..http import HTTPListener  # the HTTP listener is what this document describes

    if not isinstance(listener, HTTPListener):
        raise TypeError(f"an OpenAPI document describes an HTTPListener, not a {type(listener).__name__}")
    registry = SchemaRegistry("#/components/schemas/{name}")
    info: Document = {"title": title or type(listener).__name__, "version": version}
    if description:
        info["description"] = description
    paths: Document = {}
    validated = False
    for contract in route_contracts(listener, registry):
        method, sep, path = contract.address.partition(":")
        if not sep or method not in OPENAPI_METHODS:
            continue
        paths.setdefault(path, {})[method.lower()] = _operation(contract)
        validated = validated or contract.typed
    schemas = dict(registry.definitions)
    if validated:
        for name, schema in VALIDATION_ERROR_SCHEMAS.items():
            schemas.setdefault(name, schema)
    document: Document = {
        "openapi": OPENAPI_VERSION,
        "info": info,
        "servers": [{"url": f"http://{listener.host}:{listener.port}"}],
        "paths": paths,
    }
    if schemas:
        document["components"] = {"schemas": schemas}
    return document


def _operation(contract: RouteContract) -> Document:
    operation: Document = {"operationId": contract.name}
    if contract.summary:
        operation["summary"] = contract.summary
    if contract.description:
        operation["description"] = contract.description
    if contract.parameters:
        operation["parameters"] = [
            {
                "name": parameter.name,
                "in": "path",
                "required": True,
                "description": f"convertor `{parameter.convertor}`",
                "schema": parameter.schema,
            }
            for parameter in contract.parameters
        ]
    if contract.payload is not None:
        operation["requestBody"] = {
            "required": contract.typed,
            "content": {"application/json": {"schema": contract.payload}},
        }
    responses: Document = {"200": {"description": "What the handler returns"}}
    if contract.typed:
        responses["422"] = {
            "description": "The body does not fit the types the handler declares",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        }
    operation["responses"] = responses
    return operation
