"""Routes, injection and return values of the HTTP listener, over real loopback sockets."""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator, Iterator

import pytest

from tiny_listener import Param
from tiny_listener.http import (
    HTTPContext,
    HTTPListener,
    JSONResponse,
    Request,
    Response,
    ResponseAlreadyStarted,
    StreamingResponse,
)

from .client import connect, serving


class Mine(HTTPContext):
    def greet(self) -> str:
        return f"hi from {self.path}"


def make_app() -> HTTPListener:
    app = HTTPListener()

    @app.on_event("GET:/user/{username}")
    async def hello(username: Param) -> str:
        return f"Hello, {username}!"

    @app.on_event("GET:/items/{item_id:int}")
    async def get_item(item_id: Param) -> Any:
        return {"id": item_id, "double": item_id * 2}

    @app.on_event("POST:/items/{item_id:int}")
    async def post_item(item_id: Param, request: Request) -> Any:
        return [item_id, await request.json()]

    @app.on_event("GET:/throw")
    async def throw() -> None:
        raise RuntimeError("boom")

    @app.on_event("GET:/bytes")
    async def raw_bytes() -> bytes:
        return b"\x00\x01"

    @app.on_event("GET:/none")
    async def nothing() -> None:
        return None

    @app.on_event("GET:/custom")
    async def custom() -> Response:
        return Response("created", status_code=201, headers={"X-Thing": "1"}, media_type="text/csv")

    @app.on_event("GET:/json-response")
    async def json_response() -> JSONResponse:
        return JSONResponse({"ü": 1}, status_code=202)

    @app.on_event("GET:/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> AsyncIterator[str]:
            for i in range(3):
                yield f"part{i};"

        return StreamingResponse(parts(), media_type="text/plain")

    @app.on_event("GET:/sync-stream")
    async def sync_stream() -> StreamingResponse:
        def parts() -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        return StreamingResponse(parts())

    @app.on_event("GET:/seed-style")
    async def seed_style(ctx: HTTPContext) -> None:
        ctx.response(200, b"answered through the context")

    @app.on_event("GET:/seed-500")
    async def seed_500(ctx: HTTPContext) -> None:
        ctx.throw_500()

    @app.on_event("GET:/inspect")
    async def inspect_request(request: Request, ctx: HTTPContext) -> Any:
        assert ctx is request
        return {
            "method": request.method,
            "path": request.path,
            "target": request.target,
            "query": request.query,
            "query_list": request.query_list,
            "header": request.headers["x-test"],
            "all": request.headers.getlist("X-Multi"),
            "client_host": request.client[0] if request.client else None,
            "version": request.http_version,
            "body": (await request.body()).decode(),
        }

    @app.on_event("GET:/injection")
    async def injection() -> Response:
        return Response("x", headers={"X-Evil": "a\r\nSet-Cookie: stolen=1"})

    @app.on_event("GET:/twice")
    async def twice(ctx: HTTPContext) -> None:
        ctx.response(200, "first")
        ctx.response(200, "second")  # raises ResponseAlreadyStarted: logged, the first stands

    @app.on_event("GET:/bad-return")
    async def bad_return() -> Any:
        return 3.5

    @app.on_event("HEAD:/only-head")
    async def only_head() -> Response:
        return Response(b"", headers={"X-Head": "yes"})

    @app.on_event("GET:/only-head")
    async def only_head_get() -> str:
        return "get"

    return app


async def test_path_params_are_percent_decoded() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/user/b%C3%B6b")
        assert (reply.status, reply.body.decode()) == (200, "Hello, böb!")
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert reply.headers["content-length"] == str(len("Hello, böb!".encode()))


async def test_return_values_become_responses() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/items/21")
        assert reply.headers["content-type"] == "application/json"
        assert json.loads(reply.body) == {"id": 21, "double": 42}
        reply = await client.request("POST", "/items/7", body=b'{"a": [1]}')
        assert json.loads(reply.body) == [7, {"a": [1]}]
        reply = await client.request("GET", "/bytes")
        assert (reply.body, reply.headers["content-type"]) == (b"\x00\x01", "application/octet-stream")
        reply = await client.request("GET", "/none")
        assert reply.status == 204 and reply.body == b""
        reply = await client.request("GET", "/custom")
        assert (reply.status, reply.body, reply.headers["x-thing"]) == (201, b"created", "1")
        assert reply.headers["content-type"] == "text/csv"
        reply = await client.request("GET", "/json-response")
        assert reply.status == 202 and json.loads(reply.body) == {"ü": 1}


async def test_streaming_responses_are_chunked() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/stream")
        assert reply.headers["transfer-encoding"] == "chunked"
        assert reply.body == b"part0;part1;part2;"
        reply = await client.request("GET", "/sync-stream")
        assert reply.body == b"ab"


async def test_seed_style_context_methods_answer() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/seed-style")
        assert (reply.status, reply.body) == (200, b"answered through the context")
        reply = await client.request("GET", "/seed-500")
        assert (reply.status, reply.body) == (500, b"Internal Server Error")


async def test_the_request_is_injected_with_everything_about_it() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request(
            "GET",
            "/inspect?a=1&b=x%20y&a=2",
            body=b"payload",
            headers="X-Test: yes\r\nX-Multi: 1\r\nX-Multi: 2\r\n",
        )
        assert json.loads(reply.body) == {
            "method": "GET",
            "path": "/inspect",
            "target": "/inspect?a=1&b=x%20y&a=2",
            "query": {"a": "2", "b": "x y"},
            "query_list": [["a", "1"], ["b", "x y"], ["a", "2"]],
            "header": "yes",
            "all": ["1", "2"],
            "client_host": "127.0.0.1",
            "version": "1.1",
            "body": "payload",
        }


async def test_404_405_and_allow() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/nowhere")
        assert (reply.status, reply.body) == (404, b"Not Found")
        reply = await client.request("DELETE", "/items/3")
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, POST, HEAD"
        # Both answers kept the connection usable.
        assert (await client.request("GET", "/user/x")).status == 200


async def test_handler_errors_are_500_logged_with_traceback_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/throw")
        assert (reply.status, reply.body) == (500, b"Internal Server Error")
        failure = next(r for r in caplog.records if r.name == "tiny_listener" and r.levelno == logging.ERROR)
        assert failure.exc_info is not None and "boom" in str(failure.exc_info[1])
        reply = await client.request("GET", "/bad-return")
        assert reply.status == 500
        assert (await client.request("GET", "/user/after")).body == b"Hello, after!"


async def test_head_is_answered_by_get_routes_or_an_explicit_head_route() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("HEAD", "/user/bob")
        assert reply.status == 200 and reply.headers["content-length"] == str(len(b"Hello, bob!"))
        reply = await client.request("HEAD", "/only-head")
        assert reply.headers["x-head"] == "yes"
        # No body bytes were sent after the HEAD answers: the next response parses cleanly.
        assert (await client.request("GET", "/only-head")).body == b"get"


async def test_one_access_line_per_request_in_the_seed_format(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tiny_listener.http.access")
    async with serving(make_app()) as (app, _), connect(app) as client:
        await client.request("GET", "/user/bob")
        await client.request("GET", "/nowhere")
        port = client.writer.get_extra_info("sockname")[1]
    lines = [r.getMessage() for r in caplog.records if r.name == "tiny_listener.http.access"]
    assert lines == [
        f'127.0.0.1:{port} - "GET /user/bob HTTP/1.1" 200',
        f'127.0.0.1:{port} - "GET /nowhere HTTP/1.1" 404',
    ]


async def test_the_context_class_must_be_an_http_context() -> None:
    app = HTTPListener()
    app.set_context_cls(Mine)

    @app.on_event("GET:/greet")
    async def greet(ctx: Mine) -> str:
        return ctx.greet()

    with pytest.raises(TypeError):
        app.set_context_cls(Request)
    async with serving(app), connect(app) as client:
        assert (await client.request("GET", "/greet")).body == b"hi from /greet"


async def test_header_injection_is_refused_with_500(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/injection")
        assert reply.status == 500 and "set-cookie" not in reply.headers
        assert (await client.request("GET", "/user/next")).status == 200


async def test_a_second_answer_fails_and_the_first_stands(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("GET", "/twice")
        assert (reply.status, reply.body) == (200, b"first")
        assert (await client.request("GET", "/user/next")).status == 200
    assert any(
        r.exc_info and isinstance(r.exc_info[1], ResponseAlreadyStarted) for r in caplog.records if r.exc_info
    )


async def test_head_on_a_streaming_route_sends_no_body() -> None:
    async with serving(make_app()) as (app, _), connect(app) as client:
        reply = await client.request("HEAD", "/stream")
        assert reply.status == 200 and reply.headers["content-type"] == "text/plain"
        assert (await client.request("GET", "/sync-stream")).body == b"ab"


MALFORMED = {
    # name: (what the handler does, what the log line says)
    "status-0": (lambda ctx: Response("x", status_code=0), "status 0 is not an HTTP status"),
    "status-negative": (lambda ctx: ctx.response(-1, b"x"), "status -1 is not an HTTP status"),
    "status-600": (lambda ctx: Response("x", status_code=600), "status 600 is not an HTTP status"),
    "status-86316": (lambda ctx: ctx.response(86316, b"x"), "status 86316 is not an HTTP status"),
    "status-text": (lambda ctx: Response("x", status_code="200"), "is not an int"),
    "status-100": (lambda ctx: Response("x", status_code=100), "status 100 is interim"),
    "status-101": (lambda ctx: ctx.response(101, b""), "status 101 is interim"),
    "status-103": (lambda ctx: StreamingResponse(iter([b"x"]), status_code=103), "status 103 is interim"),
    "status-199": (lambda ctx: Response("x", status_code=199), "status 199 is interim"),
    "header-soh": (lambda ctx: Response("x", headers={"X-A": "a\x01b"}), "control characters"),
    "header-del": (lambda ctx: Response("x", headers={"X-A": "a\x7fb"}), "control characters"),
    "header-vt": (lambda ctx: Response("x", headers={"X-A": "a\x0bb"}), "control characters"),
    "header-ff": (lambda ctx: ctx.response(200, b"x", headers={"X-A": "a\x0cb"}), "control characters"),
    "header-name": (lambda ctx: Response("x", headers={"X A": "v"}), "must be a token"),
    "length-long": (lambda ctx: Response("abc", headers={"Content-Length": "10"}), "does not match the body"),
    "length-short": (lambda ctx: ctx.response(200, b"abc", headers={"Content-Length": "1"}), "does not match"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_response_becomes_a_logged_500_and_the_connection_goes_on(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = HTTPListener()
    build, problem = MALFORMED[case]

    @app.on_event("GET:/malformed")
    async def makes_a_bad_response(ctx: HTTPContext) -> Any:
        return build(ctx)

    @app.on_event("GET:/fine")
    async def fine() -> str:
        return "fine"

    async with serving(app), connect(app) as client:
        reply = await client.request("GET", "/malformed")
        assert (reply.status, reply.body) == (500, b"Internal Server Error")
        assert "connection" not in reply.headers  # a well-formed answer: the connection is kept
        assert (await client.request("GET", "/fine")).body == b"fine"
    [failure] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "handler makes_a_bad_response" in failure.getMessage() and problem in failure.getMessage()


async def test_head_may_announce_the_length_a_get_would_get() -> None:
    app = HTTPListener()

    @app.on_event("HEAD:/file")
    async def file_head() -> Response:
        return Response(b"", headers={"Content-Length": "1234"})

    async with serving(app), connect(app) as client:
        reply = await client.request("HEAD", "/file")
        assert (reply.status, reply.headers["content-length"]) == (200, "1234")
