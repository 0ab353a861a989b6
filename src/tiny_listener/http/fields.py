"""What RFC 9110 allows in a response's status code and header fields.

Checked where a response is built (``Response``, ``StreamingResponse``: the handler gets the
error, with its own line in the traceback) and again where it is framed for the wire
(:mod:`tiny_listener.http.protocol`), so that nothing malformed is ever sent.
"""

from __future__ import annotations

import re
from typing import Any

# RFC 9110 5.1: a field name is a token.
HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
# RFC 9110 5.5: visible characters, obs-text, spaces and tabs; no other control character.
HEADER_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


def status_problem(status_code: Any) -> str | None:
    """Return why ``status_code`` cannot be a response's final status, or None if it can.

    A final status is an ``int`` from 200 to 599; 1xx statuses are interim only (this server
    sends ``100 Continue`` itself), and anything else is not HTTP.
    """
    if type(status_code) is not int:
        return f"status code {status_code!r} is not an int"
    if 200 <= status_code <= 599:
        return None
    if 100 <= status_code <= 199:
        return f"status {status_code} is interim (1xx) and cannot be the final answer; use 200-599"
    return f"status {status_code} is not an HTTP status; use 200-599"


def check_status(status_code: Any) -> int:
    """Return ``status_code`` if it can be a final status; raise ``ValueError`` otherwise."""
    problem = status_problem(status_code)
    if problem is not None:
        raise ValueError(problem)
    return int(status_code)


def header_problem(name: bytes, value: bytes) -> str | None:
    """Return why (``name``, ``value``) cannot be sent as a header field, or None if it can."""
    if HEADER_NAME.fullmatch(name) is None:
        return f"invalid response header name {name!r}: it must be a token (RFC 9110 5.1)"
    if HEADER_VALUE.fullmatch(value) is None:
        return f"invalid value of response header {name.decode('latin-1')!r}: {value!r} has control characters"
    return None
