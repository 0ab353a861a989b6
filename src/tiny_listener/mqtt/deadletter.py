"""What a dead-lettered MQTT message looks like, without any network code.

MQTT 3.1.1 messages have no headers, so a dead letter is a JSON envelope that carries the
original topic, why it was given up, after how many attempts, and the payload in base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict

from .. import delivery

# Dead-letter reasons and the bound on error texts: named once, for every broker listener.
NO_ROUTE = delivery.NO_ROUTE
UNDECODABLE = delivery.UNDECODABLE
HANDLER_FAILED = delivery.HANDLER_FAILED
MAX_ERROR_TEXT = delivery.MAX_ERROR_TEXT


def error_text(error: BaseException | None) -> str:
    """Return ``repr(error)`` shortened to :data:`MAX_ERROR_TEXT` characters ("" for None):
    an exception's repr can embed a whole payload."""
    return "" if error is None else delivery.error_text(error)


def envelope(
    topic: str, payload: bytes, *, reason: str, error: BaseException | None, attempts: int, qos: int, retain: bool
) -> bytes:
    """Return the JSON bytes of the dead letter of a message."""
    document: Dict[str, Any] = {
        "topic": topic,
        "reason": reason,
        "error": error_text(error),
        "attempts": attempts,
        "qos": qos,
        "retain": retain,
        "payload_base64": base64.b64encode(payload).decode("ascii"),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def open_envelope(data: bytes) -> Dict[str, Any]:
    """Return the fields of a dead letter, with the original payload under ``"payload"``
    (bytes). Raises ``ValueError`` if ``data`` is not a dead letter."""
    try:
        document = json.loads(data)
        document["payload"] = base64.b64decode(document["payload_base64"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a tiny-listener MQTT dead letter: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("not a tiny-listener MQTT dead letter: not a JSON object")
    return document
