"""``tiny_listener.http`` exports exactly its public names, and importing tiny_listener needs no h11."""

from __future__ import annotations

import subprocess
import sys

import tiny_listener.http as http


def test_all_is_unique_and_every_name_exists() -> None:
    assert len(http.__all__) == len(set(http.__all__))
    assert [name for name in http.__all__ if not hasattr(http, name)] == []


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(http).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("tiny_listener.http")
    }
    assert public - set(http.__all__) == set()


def test_importing_tiny_listener_does_not_import_h11() -> None:
    code = "import sys, tiny_listener; assert 'h11' not in sys.modules and 'httptools' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
