"""Load ``module:attribute`` strings, telling a typo apart from a module that fails to import."""

from __future__ import annotations

import importlib
from typing import Any


class ImportFromStringError(ImportError):
    """The import string is malformed, its module does not exist or lacks the attribute."""


class ModuleNotFound(ImportFromStringError, ModuleNotFoundError):
    """The module of the import string does not exist (a ``ModuleNotFoundError``, as in 1.2)."""


def import_from_string(import_str: Any) -> Any:
    """Return the object named by ``"package.module:attr.subattr"``.

    Raises :class:`ImportFromStringError` (no traceback worth showing) when the string is
    malformed, the module is not found (then :class:`ModuleNotFound`, also a
    ``ModuleNotFoundError``) or the attribute is missing. Any other exception raised
    while the module is imported propagates unchanged: it is a bug in that module.
    """
    import_str = str(import_str)
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(f"import string {import_str!r} must be in format '<module>:<attribute>'")
    try:
        instance = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        # Only "this very module (or a parent) is missing" is a typo; a missing import inside
        # the module is the module's own bug and keeps its traceback.
        if exc.name is None or not (module_str == exc.name or module_str.startswith(exc.name + ".")):
            raise
        raise ModuleNotFound(f"could not import module {module_str!r}", name=module_str) from None
    for attr in attrs_str.split("."):
        try:
            instance = getattr(instance, attr)
        except AttributeError:
            raise ImportFromStringError(f"module {module_str!r} has no attribute {attrs_str!r}") from None
    return instance
