"""Codecs turn event data into message bytes and back, for the broker listeners.

JSON is the default. A codec is any object with ``encode(data) -> bytes`` and
``decode(payload) -> data``; ``decode`` raises :class:`DecodeError` for a payload it cannot
read, so that listeners can dead-letter the message with the reason instead of losing it.
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any, Callable, Tuple

from .errors import ListenerError

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8 is not supported anyway
    Protocol = object  # type: ignore[assignment]


class DecodeError(ListenerError, ValueError):
    """A message payload cannot be decoded by the listener's codec."""


class Codec(Protocol):
    """What a codec provides."""

    def encode(self, data: Any) -> bytes: ...

    def decode(self, payload: bytes) -> Any: ...


# json's C scanner, called directly: JSONDecoder.decode() adds two Python frames and two regex
# searches for surrounding whitespace to the scan (two thirds of the cost of a small payload).
_scan_json: Callable[[str, int], Tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed types the argument as a scanner
)


class JsonCodec:
    """UTF-8 JSON. ``decode`` raises :class:`DecodeError` for invalid JSON or UTF-8."""

    content_type = "application/json"

    def encode(self, data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, payload: bytes) -> Any:
        try:
            # UTF-8 decoded here, not by json.loads(bytes), which first guesses the encoding
            # among UTF-8, -16 and -32. A document that is one JSON value with nothing around it
            # is the answer of the scan; anything else (whitespace around it, trailing data,
            # invalid JSON or UTF-8) goes through json.loads: its result or error is the answer.
            text = str(payload, "utf-8")
            value, end = _scan_json(text, 0)
            if end == len(text):
                return value
        except (ValueError, StopIteration):  # UnicodeDecodeError and JSONDecodeError included
            pass
        try:
            return json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(f"payload is not valid JSON: {exc}") from exc


class RawCodec:
    """Bytes in, bytes out: the payload is the data."""

    content_type = "application/octet-stream"

    def encode(self, data: Any) -> bytes:
        if isinstance(data, str):
            return data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"RawCodec encodes bytes or str, not {type(data).__name__}")
        return bytes(data)

    def decode(self, payload: bytes) -> Any:
        return bytes(payload)
