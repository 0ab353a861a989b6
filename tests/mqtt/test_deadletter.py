"""Dead-letter envelopes and payload decoding, without a broker."""

from __future__ import annotations

import pytest

from tiny_listener.codecs import DecodeError, JsonCodec
from tiny_listener.mqtt import open_envelope, payload_to_data
from tiny_listener.mqtt.deadletter import MAX_ERROR_TEXT, envelope


def test_an_envelope_carries_the_payload_and_why_it_was_given_up() -> None:
    letter = envelope(
        "/a/b", b"\x00\xffbytes", reason="handler-failed", error=ValueError("x" * 5000), attempts=4, qos=1, retain=True
    )
    opened = open_envelope(letter)
    assert opened["payload"] == b"\x00\xffbytes"
    assert (opened["topic"], opened["reason"], opened["attempts"], opened["qos"], opened["retain"]) == (
        "/a/b",
        "handler-failed",
        4,
        1,
        True,
    )
    assert len(opened["error"]) == MAX_ERROR_TEXT and opened["error"].endswith("...")


@pytest.mark.parametrize("junk", [b"not json", b"[]", b'{"payload_base64": "***"}', b"{}"])
def test_open_envelope_refuses_other_payloads(junk: bytes) -> None:
    with pytest.raises(ValueError, match="not a tiny-listener MQTT dead letter"):
        open_envelope(junk)


def test_payload_to_data() -> None:
    assert payload_to_data(b"raw", None) == {"payload": b"raw"}
    assert payload_to_data(b'{"a": 1}', JsonCodec()) == {"a": 1}
    assert payload_to_data(b"[1]", JsonCodec()) == {"payload": [1]}
    with pytest.raises(DecodeError):
        payload_to_data(b"{", JsonCodec())
