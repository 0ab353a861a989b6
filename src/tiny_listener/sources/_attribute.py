"""Attributes of a listener that hosts one source and shows that source's settings as its own."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class SourceAttribute(Generic[T]):
    """A class attribute of a listener that reads and writes the attribute of the same name of
    the listener's ``source`` (``app.max_in_flight`` is ``app.source.max_in_flight``): the
    thin listeners that host one source (``NATSListener``) keep the attributes they had."""

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> SourceAttribute[T]: ...

    @overload
    def __get__(self, obj: object, owner: type) -> T: ...

    def __get__(self, obj: object | None, owner: type) -> Any:
        if obj is None:
            return self
        return getattr(obj.source, self.name)  # type: ignore[attr-defined]

    def __set__(self, obj: object, value: T) -> None:
        setattr(obj.source, self.name, value)  # type: ignore[attr-defined]
