"""The codecs brokers use to turn payload bytes into event data and back."""

from __future__ import annotations

import pytest

from tiny_listener.codecs import DecodeError, JsonCodec, RawCodec


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sku": "b-1", "qty": 2}',
        bytearray(b'{"sku": "b-1", "qty": 2}'),
        '\ufeff{"sku": "b-1", "qty": 2}'.encode(),  # UTF-8 with a byte order mark
        '{"sku": "b-1", "qty": 2}'.encode("utf-16"),
        '{"sku": "b-1", "qty": 2}'.encode("utf-32"),
        b' \n{"sku": "b-1", "qty": 2}\r\n ',
    ],
    ids=["utf-8", "bytearray", "utf-8-bom", "utf-16", "utf-32", "whitespace-around"],
)
def test_json_decodes_what_json_loads_decodes(payload: bytes) -> None:
    assert JsonCodec().decode(payload) == {"sku": "b-1", "qty": 2}


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"\xff\xfe\xfd", b"nan?", b'{"a": 1} {"a": 2}', b"1 2", b" "],
    ids=["empty", "cut", "not-text", "junk", "two-documents", "trailing-data", "blank"],
)
def test_json_refuses_what_is_not_json_with_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError, match="payload is not valid JSON"):
        JsonCodec().decode(payload)


def test_json_round_trips_text_as_utf_8_and_raw_keeps_bytes() -> None:
    codec = JsonCodec()
    assert codec.encode({"name": "Zoë"}) == '{"name":"Zoë"}'.encode()
    assert codec.decode(codec.encode({"name": "Zoë"})) == {"name": "Zoë"}
    assert RawCodec().decode(b"\x00\x01") == b"\x00\x01"
