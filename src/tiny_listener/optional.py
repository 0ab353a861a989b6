"""Import the client library of an optional transport, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional transport's client library is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``; raise :class:`MissingExtraError` naming the pip extra if it is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or module.split(".")[0] != exc.name.split(".")[0]:
            raise
        raise MissingExtraError(
            f"{module!r} is not installed; install it with: pip install 'tiny-listener[{extra}]'"
        ) from exc
