"""The sans-IO HTTP connection (each parser), driven with plain calls: no socket, no event loop."""

from __future__ import annotations

from typing import Any, List

import pytest

from tiny_listener.http.httptools_protocol import HttptoolsConnection
from tiny_listener.http.limits import BodyClock, Limits
from tiny_listener.http.protocol import (
    BODY_END,
    CLIENT_CLOSED,
    NEED_DATA,
    PAUSED,
    BodyChunk,
    ConnectionEvent,
    Cycle,
    ProtocolFailure,
    RequestHead,
    ResponseError,
)
from tiny_listener.http.protocol import BaseServerConnection as Connection
from tiny_listener.http.protocol import ServerConnection as H11Connection

GET = b"GET /user/bob?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
TEXT = [(b"content-type", b"text/plain")]
CHUNKED_POST = b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


CLASSES = {"h11": H11Connection, "httptools": HttptoolsConnection}
CURRENT = ["h11"]


@pytest.fixture(autouse=True)
def _select(parser: str) -> None:
    CURRENT[0] = parser


def new_connection(limits: Limits | None = None) -> Connection:
    """A connection with the parser under test (the ``parser`` fixture of conftest.py)."""
    return CLASSES[CURRENT[0]](limits)


def events(conn: Connection) -> List[ConnectionEvent]:
    """Every event until the connection needs data, pauses, fails or sees the client close."""
    out: List[ConnectionEvent] = []
    while True:
        event = conn.next_event()
        out.append(event)
        if event in (NEED_DATA, PAUSED, CLIENT_CLOSED) or isinstance(event, ProtocolFailure):
            return out


def test_get_request_is_parsed_answered_and_the_connection_kept() -> None:
    conn = new_connection()
    conn.receive_data(GET)
    head, end, need_data = events(conn)
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.http_version) == ("GET", "/user/bob?x=1", "1.1")
    assert (b"host", b"a") in list(head.headers)
    # h11 pauses only when bytes of a next request are buffered.
    assert (end, need_data) == (BODY_END, NEED_DATA)
    data = conn.respond(200, list(TEXT), b"hello")
    assert data == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    assert conn.finish_cycle() is Cycle.KEEP_ALIVE
    assert conn.next_event() is NEED_DATA


def test_pipelined_requests_wait_for_the_response_and_come_in_order() -> None:
    conn = new_connection()
    conn.receive_data(GET.replace(b"bob", b"one") + GET.replace(b"bob", b"two"))
    first = events(conn)
    assert first[0].target.startswith("/user/one") and first[-1] is PAUSED  # type: ignore[union-attr]
    assert conn.next_event() is PAUSED  # nothing more until the first is answered
    conn.respond(200, [], b"1")
    assert conn.finish_cycle() is Cycle.KEEP_ALIVE
    second = events(conn)
    assert second[0].target.startswith("/user/two") and second[-1] is NEED_DATA  # type: ignore[union-attr]


def test_a_body_arriving_in_later_packets_is_delivered() -> None:
    conn = new_connection()
    conn.receive_data(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(conn.next_event(), RequestHead)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"01234")
    assert conn.next_event() == BodyChunk(b"01234")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"56789")
    assert events(conn) == [BodyChunk(b"56789"), BODY_END, NEED_DATA]


def test_a_chunked_body_is_delivered() -> None:
    conn = new_connection()
    conn.receive_data(CHUNKED_POST + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    got = events(conn)
    assert b"".join(e.data for e in got if isinstance(e, BodyChunk)) == b"abcde"
    assert got[-2:] == [BODY_END, NEED_DATA]


def test_head_gets_the_headers_of_get_and_no_body() -> None:
    conn = new_connection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    events(conn)
    data = conn.respond(200, list(TEXT), b"hello")
    assert data.endswith(b"content-length: 5\r\n\r\n")
    assert conn.finish_cycle() is Cycle.KEEP_ALIVE


def test_http10_and_connection_close_end_the_connection() -> None:
    for request in (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"):
        conn = new_connection()
        conn.receive_data(request)
        events(conn)
        assert b"connection: close\r\n" in conn.respond(200, [], b"x")
        assert conn.finish_cycle() is Cycle.CLOSE


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n"])
def test_the_http_version_is_read_whatever_the_connection_header(version: str, connection: bytes) -> None:
    conn = new_connection()
    conn.receive_data(b"GET / HTTP/%s\r\nHost: a\r\n%s\r\n" % (version.encode(), connection))
    head = events(conn)[0]
    assert isinstance(head, RequestHead)
    assert head.http_version == version
    conn.respond(200, [], b"x")
    kept = version == "1.1" and b"close" not in connection
    assert conn.finish_cycle() is (Cycle.KEEP_ALIVE if kept else Cycle.CLOSE)


def test_a_body_of_unknown_length_is_chunked_for_http11_and_close_delimited_for_http10() -> None:
    conn = new_connection()
    conn.receive_data(GET)
    events(conn)
    head = conn.start_response(200, [])
    assert b"transfer-encoding: chunked" in head
    assert conn.send_body(b"abc") + conn.end_response() == b"3\r\nabc\r\n0\r\n\r\n"
    assert conn.finish_cycle() is Cycle.KEEP_ALIVE

    conn = new_connection()
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    events(conn)
    head = conn.start_response(200, [])
    assert b"transfer-encoding" not in head and b"connection: close" in head
    assert conn.send_body(b"abc") + conn.end_response() == b"abc"
    assert conn.finish_cycle() is Cycle.CLOSE


def test_expect_100_continue_is_answered_once_when_the_body_is_wanted() -> None:
    conn = new_connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    head = conn.next_event()
    assert isinstance(head, RequestHead) and head.expects_continue
    assert conn.send_continue() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.send_continue() == b""
    conn.receive_data(b"ok")
    assert events(conn) == [BodyChunk(b"ok"), BODY_END, NEED_DATA]


def test_a_final_answer_without_100_continue_closes_the_connection() -> None:
    conn = new_connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    events(conn)
    conn.respond(417, [], b"")
    # The client may or may not send the body now: the connection cannot be reused.
    assert conn.finish_cycle() is Cycle.CLOSE


def test_an_unread_body_is_skipped_before_the_next_request() -> None:
    conn = new_connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
    assert isinstance(conn.next_event(), RequestHead)
    conn.respond(200, [], b"early")
    assert conn.finish_cycle() is Cycle.DRAIN
    conn.receive_data(b"def" + GET)
    head = conn.next_event()
    assert isinstance(head, RequestHead) and head.target == "/user/bob?x=1"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 400),
    ],
)
def test_malformed_requests_fail_with_a_status(request_bytes: bytes, status: int) -> None:
    conn = new_connection()
    conn.receive_data(request_bytes)
    failure = events(conn)[-1]
    assert isinstance(failure, ProtocolFailure) and failure.status_code == status
    answer = conn.reject(failure.status_code)
    assert answer.startswith(b"HTTP/1.1 %d " % status) and b"connection: close" in answer
    assert conn.finish_cycle() is Cycle.CLOSE


def test_content_length_with_transfer_encoding_is_rejected_and_nothing_is_smuggled() -> None:
    conn = new_connection()
    smuggled = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )
    got = events(conn)
    assert len(got) == 1 and isinstance(got[0], ProtocolFailure) and got[0].status_code == 400
    assert conn.finish_cycle() is Cycle.CLOSE


def test_headers_over_the_limit_get_431_whether_complete_or_not() -> None:
    limits = Limits(max_header_bytes=1024)
    complete = new_connection(limits)
    complete.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 2000 + b"\r\n\r\n")
    assert complete.next_event() == ProtocolFailure(431, "request headers are over 1024 bytes")
    incomplete = new_connection(limits)
    incomplete.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 2000)
    failure = incomplete.next_event()
    assert isinstance(failure, ProtocolFailure) and failure.status_code == 431


def test_pipelined_small_requests_are_not_mistaken_for_large_headers() -> None:
    conn = new_connection(Limits(max_header_bytes=200))
    conn.receive_data(GET * 20)
    for _ in range(20):
        assert isinstance(conn.next_event(), RequestHead)
        events(conn)
        conn.respond(204, [], b"")
        assert conn.finish_cycle() is Cycle.KEEP_ALIVE


def test_bodies_over_the_limit_get_413_for_either_framing() -> None:
    limits = Limits(max_body_bytes=10)
    declared = new_connection(limits)
    declared.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    assert declared.next_event() == ProtocolFailure(413, "request body is over 10 bytes")
    chunked = new_connection(limits)
    chunked.receive_data(CHUNKED_POST + b"8\r\n12345678\r\n8\r\n12345678\r\n")
    got = events(chunked)
    assert got[1] == BodyChunk(b"12345678") and got[-1] == ProtocolFailure(413, "request body is over 10 bytes")


def test_client_closing_is_reported() -> None:
    conn = new_connection()
    conn.receive_data(b"")
    assert conn.next_event() is CLIENT_CLOSED


def test_response_headers_cannot_inject_lines() -> None:
    conn = new_connection()
    conn.receive_data(GET)
    events(conn)
    with pytest.raises(ResponseError):
        conn.start_response(200, [(b"x", b"a\r\nSet-Cookie: evil=1")])
    with pytest.raises(ResponseError):
        conn.start_response(200, [(b"bad name", b"v")])
    # Nothing was sent: a proper response still can be.
    assert conn.respond(500, [], b"").startswith(b"HTTP/1.1 500 ")


def test_a_body_that_does_not_match_its_content_length_is_an_error() -> None:
    for body, failing_step in ((b"toolong", "send_body"), (b"ab", "end_response")):
        conn = new_connection()
        conn.receive_data(GET)
        events(conn)
        conn.start_response(200, [(b"content-length", b"3")])
        with pytest.raises(ResponseError):
            conn.send_body(body)
            conn.end_response()
        assert failing_step in ("send_body", "end_response")
        assert conn.finish_cycle() is Cycle.CLOSE


@pytest.mark.parametrize(
    "request_bytes",
    [
        GET,
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ],
)
@pytest.mark.parametrize("close_requested", [False, True])
def test_respond_text_sends_what_respond_sends(request_bytes: bytes, close_requested: bool) -> None:
    answers = []
    for use_shortcut in (False, True):
        conn = new_connection()
        conn.receive_data(request_bytes)
        events(conn)
        if close_requested:
            conn.request_close()
        if use_shortcut:
            data = conn.respond_text("Héllo".encode())
            with pytest.raises(ResponseError):
                conn.respond_text(b"a second response")
        else:
            data = conn.respond(200, [(b"content-type", b"text/plain; charset=utf-8")], "Héllo".encode())
        answers.append((data, conn.finish_cycle()))
    assert answers[0] == answers[1]


def test_close_requested_says_so_in_the_response() -> None:
    conn = new_connection()
    conn.receive_data(GET)
    events(conn)
    conn.request_close()
    assert b"connection: close" in conn.respond(200, [], b"")
    assert conn.finish_cycle() is Cycle.CLOSE


@pytest.mark.parametrize("status", [0, -1, 99, 100, 101, 103, 199, 600, 999, 86316, "200", True])
def test_a_final_status_must_be_an_int_from_200_to_599(status: Any) -> None:
    conn = new_connection()
    conn.receive_data(GET)
    events(conn)
    with pytest.raises(ResponseError):
        conn.start_response(status, [])
    # Nothing was sent: a proper response still can be.
    assert conn.respond(500, [], b"").startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x7fb", b"a\x0bb", b"a\x0cb", b"a\x00b", b"a\rb", b"a\nb"])
def test_control_characters_in_header_values_are_refused(value: bytes) -> None:
    conn = new_connection()
    conn.receive_data(GET)
    events(conn)
    with pytest.raises(ResponseError, match="control characters"):
        conn.start_response(200, [(b"x-a", value)])
    # Tabs, spaces and obs-text are field content.
    assert conn.respond(200, [(b"x-a", b"a\tb c\xe9")], b"").startswith(b"HTTP/1.1 200 ")


def test_a_content_length_that_is_not_the_body_length_is_refused_before_anything_is_sent() -> None:
    conn = new_connection()
    conn.receive_data(GET)
    events(conn)
    with pytest.raises(ResponseError, match="does not match the body of 3 bytes"):
        conn.respond(200, [(b"content-length", b"10")], b"abc")
    assert not conn.response_started
    assert conn.respond(500, [], b"").startswith(b"HTTP/1.1 500 ")


def test_the_body_clock_counts_only_the_time_the_body_is_awaited() -> None:
    limits = Limits(body_timeout=10.0, min_body_rate=100.0)
    clock = BodyClock(limits, now=0.0)
    clock.progress(500, now=5.0)
    assert clock.expired(14.0) is None and clock.next_check(14.0) == 15.0
    assert clock.expired(15.0) == "no request body bytes for 10.0s"
    clock.pause(9.0)  # the handler is slow to read: not the client's time
    assert clock.next_check(100.0) is None and clock.expired(100.0) is None
    clock.resume(100.0)
    assert clock.expired(105.9) is None and clock.expired(106.0) is not None


def test_the_body_clock_cuts_off_a_body_slower_than_the_minimum_rate() -> None:
    clock = BodyClock(Limits(body_timeout=10.0, min_body_rate=100.0), now=0.0)
    for second in range(1, 12):  # one byte a second: progress, but far below 100 bytes/s
        clock.progress(1, now=float(second))
        if clock.expired(float(second)):
            break
    assert second == 11 and clock.expired(11.0) == "request body slower than 100 bytes/s"
