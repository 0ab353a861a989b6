"""examples/http_app.py with the httptools parser, for bench_http.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from http_app import app

app.parser = "httptools"

__all__ = ["app"]
