"""Apps shared by the testing-package tests."""

from __future__ import annotations

from typing import Any, List

from tiny_listener import Listener


class NoIntakeApp(Listener):  # type: ignore[type-arg]
    """A listener whose listen() must never run under a TestClient."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: List[str] = []

    async def listen(self) -> None:
        raise AssertionError("TestClient must not run listen()")
