"""The framers, driven without any socket."""

from __future__ import annotations

import pytest

from tiny_listener.tcp import FrameTooLarge, LengthPrefixFramer, LineFramer


def test_lines_split_across_chunks_and_crlf() -> None:
    framer = LineFramer()
    assert framer.feed(b"hel") == []
    assert framer.feed(b"lo\r\nwor") == [b"hello"]
    assert framer.buffered == 3
    assert framer.feed(b"ld\n\nlast") == [b"world", b""]
    assert framer.feed(b"\n") == [b"last"]


def test_line_longer_than_the_limit_stops_the_framer_after_the_frames_before_it() -> None:
    framer = LineFramer(max_frame_size=4)
    assert framer.feed(b"ok\nabcd\r\ntoolong\nafter\n") == [b"ok", b"abcd"]
    assert isinstance(framer.error, FrameTooLarge)
    with pytest.raises(FrameTooLarge):
        framer.feed(b"more\n")


def test_unfinished_line_over_the_limit_is_detected_before_its_delimiter() -> None:
    framer = LineFramer(max_frame_size=4)
    assert framer.feed(b"abcd\r") == []  # the CR may belong to the CRLF
    assert framer.feed(b"x") == []
    assert framer.error is not None and framer.error.size == 6


def test_line_encode() -> None:
    framer = LineFramer(max_frame_size=5)
    assert framer.encode(b"hi") == b"hi\n"
    with pytest.raises(ValueError, match="delimiter"):
        framer.encode(b"a\nb")
    with pytest.raises(FrameTooLarge):
        framer.encode(b"123456")


def test_length_prefixed_frames_split_anywhere() -> None:
    framer = LengthPrefixFramer()
    stream = framer.encode(b"one") + framer.encode(b"") + framer.encode(b"three\nwith newline")
    frames = []
    for i in range(len(stream)):
        frames += framer.feed(stream[i : i + 1])
    assert frames == [b"one", b"", b"three\nwith newline"]
    assert framer.buffered == 0


def test_length_prefixed_limit_checks_the_header_before_the_body_arrives() -> None:
    framer = LengthPrefixFramer(max_frame_size=10)
    assert framer.feed(framer.encode(b"fine") + (11).to_bytes(4, "big")) == [b"fine"]
    assert framer.error is not None and framer.error.size == 11
    with pytest.raises(FrameTooLarge):
        framer.encode(b"x" * 11)
