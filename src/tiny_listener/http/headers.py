"""Read-only, case-insensitive request headers."""

from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Sequence, Tuple


class Headers(Mapping[str, str]):
    """The headers of a request. ``headers["content-type"]`` (any case) gives the last value
    of a header; :meth:`getlist` gives all of them, in order."""

    __slots__ = ("_index", "_raw")

    def __init__(self, raw: Sequence[Tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._index: Dict[str, str] | None = None

    @property
    def raw(self) -> Sequence[Tuple[bytes, bytes]]:
        """The (lower-case name, value) byte pairs as received."""
        return self._raw

    def _mapping(self) -> Dict[str, str]:
        if self._index is None:
            self._index = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self._raw}
        return self._index

    def __getitem__(self, name: str) -> str:
        return self._mapping()[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._mapping()

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def getlist(self, name: str) -> List[str]:
        """Return every value of header ``name``, in the order received (empty if none)."""
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for raw_name, value in self._raw if raw_name.lower() == key]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self.items())!r})"
