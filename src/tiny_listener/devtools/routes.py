"""The route table of an app, as rows for ``tiny-listener routes``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Tuple

from ..listener import Listener
from ..routing import PARAM_REGEX, Route


@dataclass(frozen=True)
class RouteRow:
    """One route: its match ``order`` (the first matching route wins), ``path``, the handler's
    dotted name, its parameters with their convertor names, and its ``on_event`` options."""

    order: int
    path: str
    handler: str
    params: Tuple[Tuple[str, str], ...]
    options: Dict[str, Any]


def route_rows(listener: Listener[Any]) -> List[RouteRow]:
    """Return a row per registered route, in match order."""
    return [_row(order, route) for order, route in enumerate(listener.routes.values())]


def _row(order: int, route: Route) -> RouteRow:
    params = tuple((match.group(1), (match.group(2) or ":str")[1:]) for match in PARAM_REGEX.finditer(route.path))
    fn = route.fn
    handler = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', route.name)}"
    return RouteRow(order=order, path=route.path, handler=handler, params=params, options=dict(route.opts))


def format_table(rows: List[RouteRow]) -> str:
    """Return the rows as an aligned text table with a header line."""
    header = ("#", "PATH", "HANDLER", "PARAMS", "OPTIONS")
    cells = [header] + [
        (
            str(row.order),
            row.path,
            row.handler,
            ", ".join(f"{name}:{kind}" for name, kind in row.params) or "-",
            ", ".join(f"{key}={value!r}" for key, value in row.options.items()) or "-",
        )
        for row in rows
    ]
    widths = [max(len(line[col]) for line in cells) for col in range(len(header) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths)), line[-1]]) for line in cells)


def format_json(rows: List[RouteRow]) -> str:
    """Return the rows as a JSON array; options that are not JSON values are given as repr."""
    return json.dumps(
        [{**asdict(row), "params": dict(row.params)} for row in rows],
        default=repr,
        indent=2,
    )
