"""The stream message format, without any I/O.

An event is a stream entry with two fields: ``path`` (UTF-8 text) and ``data`` (the event data
encoded by the codec). A dead letter is the original entry's fields plus ``dead_letter_*``
fields saying where it came from and why it was set aside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Union

from .._types import EventData
from ..codecs import Codec, DecodeError

PATH_FIELD = b"path"
DATA_FIELD = b"data"
PAYLOAD_KEY = "payload"
"""Data that is not a mapping (a JSON list, ``RawCodec`` bytes) reaches handlers as ``data["payload"]``."""

DEAD_LETTER_PREFIX = b"dead_letter_"
REASON_FIELD = b"dead_letter_reason"
ERROR_FIELD = b"dead_letter_error"
STREAM_FIELD = b"dead_letter_stream"
ID_FIELD = b"dead_letter_id"
GROUP_FIELD = b"dead_letter_group"
CONSUMER_FIELD = b"dead_letter_consumer"
ATTEMPTS_FIELD = b"dead_letter_attempts"
TIME_FIELD = b"dead_letter_at"

Fields = Dict[bytes, bytes]
FieldValue = Union[bytes, str, int, float]


class UndeliverableMessage(Exception):
    """A stream entry cannot become an event (no path, undecodable data); ``str()`` is the reason."""


def encode_event(path: str, data: Any, codec: Codec) -> Fields:
    """Return the fields of the stream entry for event ``path`` carrying ``data`` (no ``data``
    field when it is None: the event then carries empty data)."""
    if data is None:
        return {PATH_FIELD: path.encode()}
    return {PATH_FIELD: path.encode(), DATA_FIELD: codec.encode(data)}


def decode_event(fields: Mapping[bytes, bytes], codec: Codec) -> tuple[str, EventData]:
    """Return ``(path, data)`` of a stream entry.

    Raises :class:`UndeliverableMessage` with the reason when the entry has no ``path``, a path
    that is not UTF-8, or a ``data`` field the codec cannot decode. An entry without ``data``
    carries empty data.
    """
    raw_path = fields.get(PATH_FIELD)
    if raw_path is None:
        raise UndeliverableMessage("message has no 'path' field")
    try:
        path = raw_path.decode()
    except UnicodeDecodeError:
        raise UndeliverableMessage(f"message path is not UTF-8: {raw_path[:80]!r}") from None
    payload = fields.get(DATA_FIELD)
    if payload is None:
        return path, {}
    try:
        data = codec.decode(payload)
    except DecodeError as exc:
        raise UndeliverableMessage(f"data of event {path!r} cannot be decoded: {exc}") from None
    if isinstance(data, dict):
        return path, data
    return path, {PAYLOAD_KEY: data}


def dead_letter_fields(
    original: Mapping[bytes, bytes],
    *,
    reason: str,
    error: BaseException | None,
    stream: str,
    message_id: bytes,
    group: str,
    consumer: str,
    attempts: int,
) -> Dict[bytes, FieldValue]:
    """Return the fields of the dead letter of ``original``: its fields, then why and whence."""
    fields: Dict[bytes, FieldValue] = dict(original)
    fields[REASON_FIELD] = reason
    fields[ERROR_FIELD] = "" if error is None else repr(error)
    fields[STREAM_FIELD] = stream
    fields[ID_FIELD] = message_id
    fields[GROUP_FIELD] = group
    fields[CONSUMER_FIELD] = consumer
    fields[ATTEMPTS_FIELD] = attempts
    fields[TIME_FIELD] = f"{time.time():.3f}"
    return fields


@dataclass(frozen=True)
class DeadLetter:
    """One entry of a dead-letter stream, read back.

    ``id`` is its id in the dead-letter stream, ``original`` the fields of the message as it was
    published (what a replay publishes again), ``stream``/``source_id`` where it was read from.
    """

    id: bytes
    original: Fields
    reason: str
    error: str
    stream: str
    source_id: bytes
    attempts: int

    @property
    def path(self) -> str | None:
        """The event path of the original message, if it had a readable one."""
        raw = self.original.get(PATH_FIELD)
        return raw.decode(errors="replace") if raw is not None else None

    @classmethod
    def from_entry(cls, entry_id: bytes, fields: Mapping[bytes, bytes]) -> DeadLetter:
        """Parse a dead-letter stream entry; fields it lacks read as empty."""
        original = {key: value for key, value in fields.items() if not key.startswith(DEAD_LETTER_PREFIX)}
        attempts = fields.get(ATTEMPTS_FIELD, b"0")
        return cls(
            id=entry_id,
            original=original,
            reason=fields.get(REASON_FIELD, b"").decode(errors="replace"),
            error=fields.get(ERROR_FIELD, b"").decode(errors="replace"),
            stream=fields.get(STREAM_FIELD, b"").decode(errors="replace"),
            source_id=fields.get(ID_FIELD, b""),
            attempts=int(attempts) if attempts.isdigit() else 0,
        )
