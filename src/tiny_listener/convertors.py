"""Path parameter convertors: ``{name:kind}`` in a route path.

A convertor is a regular expression that a path segment must match, and a function that turns
the matched text into the value handlers receive. ``register_convertor`` adds new kinds.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Callable, Dict, NamedTuple

from .errors import RouteError


class Convertor(NamedTuple):
    """``regex`` must match the whole parameter text; ``convert`` turns that text into a value."""

    regex: str
    convert: Callable[[str], Any]


STR = Convertor(r"[^/]+", str)
INT = Convertor(r"[0-9]+", int)

# Regexes use only non-capturing groups: the route's named groups are the parameters.
CONVERTOR_TYPES: Dict[str, Convertor] = {
    "str": STR,
    "int": INT,
    # 1.2 left the dot unescaped, so "/v/1x5" matched and then float() raised.
    "float": Convertor(r"[0-9]+(?:\.[0-9]+)?", float),
    "path": Convertor(r".*", str),
    "uuid": Convertor(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", uuid.UUID),
}

_NAME = re.compile(r"[a-zA-Z_]\w*\Z")


def register_convertor(name: str, convertor: Convertor) -> None:
    """Make ``{param:name}`` usable in route paths registered from now on.

    Raises :class:`RouteError` if ``name`` is not an identifier or ``convertor.regex`` does not
    compile or contains capturing groups (they would shift the route's parameters).
    """
    if not _NAME.match(name):
        raise RouteError(f"convertor name {name!r} is not an identifier")
    try:
        compiled = re.compile(convertor.regex)
    except re.error as exc:
        raise RouteError(f"convertor {name!r} has an invalid regex {convertor.regex!r}: {exc}") from exc
    if compiled.groups:
        raise RouteError(f"convertor {name!r} regex {convertor.regex!r} must use only non-capturing groups (?:...)")
    CONVERTOR_TYPES[name] = convertor
