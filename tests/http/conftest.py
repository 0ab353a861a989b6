"""Every HTTP test runs with each request parser: h11 (the default) and httptools."""

from __future__ import annotations

import pytest

from tiny_listener.http import HTTPListener

PARSERS = ("h11", "httptools")


@pytest.fixture(params=PARSERS, autouse=True)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The parser of every HTTPListener the test makes (its default, set on the class)."""
    name: str = request.param
    monkeypatch.setattr(HTTPListener, "parser", name)
    return name
