"""Type aliases shared by the core, named once."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict

PathParams = Dict[str, Any]
"""Path parameters of a matched route, converted: ``{"username": "bob", "id": 3}``."""

EventData = Dict[str, Any]
"""The data an event carries; ``Data`` parameters are looked up in it by name."""

Scope = Dict[str, Any]
"""Free-form per-context information set by the listener that made the context."""

CoroFunc = Callable[..., Awaitable[Any]]
"""An ``async def`` function: handlers, hooks and dependencies."""
