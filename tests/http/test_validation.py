"""Typed request bodies over loopback: data that does not validate gets 422 with FastAPI's
error body, with each parser."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Annotated, Any, List

import msgspec
import pydantic
import pytest

from tiny_listener import Data, Event, Param, ValidationError
from tiny_listener.http import HTTPListener, JSONResponse, Request

from .client import connect, serving


class Item(pydantic.BaseModel):
    name: str
    price: float = pydantic.Field(gt=0)


class Order(msgspec.Struct):
    sku: str
    qty: int


@dataclasses.dataclass
class Note:
    text: str


def make_app() -> HTTPListener:
    app = HTTPListener()

    @app.on_event("POST:/items/{item_id:int}")
    async def create_item(item_id: Param, item: Item) -> Any:
        return {"id": item_id, "name": item.name, "price": item.price}

    @app.on_event("POST:/orders")
    async def create_order(order: Order, priority: Annotated[int, Data] = 0) -> Any:
        return {"sku": order.sku, "qty": order.qty, "priority": priority}

    @app.on_event("POST:/notes")
    async def create_note(note: Note, request: Request) -> Any:
        return {"text": note.text, "body_again": json.loads(await request.body())}

    @app.on_event("POST:/untyped")
    async def untyped(request: Request) -> Any:
        return {"len": len(await request.body())}

    return app


async def post(app: HTTPListener, target: str, body: bytes) -> Any:
    async with connect(app) as client:
        reply = await client.request("POST", target, body, headers="Content-Type: application/json\r\n")
    return reply.status, reply.headers.get("content-type"), json.loads(reply.body) if reply.body else None


async def test_valid_bodies_reach_the_handler_converted() -> None:
    async with serving(make_app()) as (app, _):
        assert await post(app, "/items/7", b'{"name": "pen", "price": "2.5"}') == (
            200,
            "application/json",
            {"id": 7, "name": "pen", "price": 2.5},
        )
        assert (await post(app, "/orders", b'{"sku": "a", "qty": 2, "priority": 1}'))[2] == {
            "sku": "a",
            "qty": 2,
            "priority": 1,
        }
        # The body is read once, and still readable by the handler.
        assert (await post(app, "/notes", b'{"text": "hi"}'))[2] == {"text": "hi", "body_again": {"text": "hi"}}


async def test_invalid_bodies_get_422_with_every_field_error(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(make_app()) as (app, _):
        status, content_type, body = await post(app, "/items/7", b'{"price": -1}')
        assert (status, content_type) == (422, "application/json")
        assert body == {
            "detail": [
                {"loc": ["body", "name"], "msg": "Field required", "type": "missing"},
                {"loc": ["body", "price"], "msg": "Input should be greater than 0", "type": "greater_than"},
            ]
        }
        status, _, body = await post(app, "/orders", b'{"sku": "a", "qty": "2", "priority": "high"}')
        assert status == 422
        assert [error["loc"] for error in body["detail"]] == [["body", "qty"], ["body", "priority"]]
        assert [error["type"] for error in body["detail"]] == ["int_type", "int_type"]
        # The connection goes on: keep-alive after a 422.
        async with connect(app) as client:
            first = await client.request("POST", "/notes", b"[1, 2]")
            second = await client.request("POST", "/untyped", b"12345")
        assert first.status == 422
        missing_text = {"loc": ["body", "text"], "msg": "Field required", "type": "missing"}
        assert json.loads(first.body)["detail"] == [missing_text]
        assert (second.status, json.loads(second.body)) == (200, {"len": 5})
    rejected = [record for record in caplog.records if "rejected by handler" in record.getMessage()]
    assert len(rejected) == 3
    assert all(record.levelno == logging.WARNING and record.exc_info is None for record in rejected)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("body", [b"{not json", b'{"name": "x"', b"\xff\xfe"])
async def test_a_body_that_is_not_json_gets_422_json_invalid(body: bytes) -> None:
    async with serving(make_app()) as (app, _):
        status, _, reply = await post(app, "/items/1", body)
    assert status == 422
    [error] = reply["detail"]
    assert error["type"] == "json_invalid" and error["msg"] == "JSON decode error"
    assert error["loc"][0] == "body" and isinstance(error["loc"][1], int)


async def test_an_empty_body_is_empty_data() -> None:
    async with serving(make_app()) as (app, _):
        status, _, reply = await post(app, "/items/1", b"")
    assert status == 422
    assert [error["loc"] for error in reply["detail"]] == [["body", "name"], ["body", "price"]]


async def test_an_on_error_handler_can_answer_validation_errors_itself() -> None:
    app = make_app()
    seen: List[str] = []

    @app.on_error(ValidationError)
    async def invalid(request: Request, event: Event) -> None:  # type: ignore[type-arg]
        seen.append(request.path)
        assert isinstance(event.error, ValidationError)
        await request.respond(JSONResponse({"problems": len(event.error.errors())}, status_code=400))

    async with serving(app):
        status, _, body = await post(app, "/items/1", b"{}")
    assert (status, body, seen) == (400, {"problems": 2}, ["/items/1"])


async def test_events_the_app_triggers_itself_are_checked_against_their_own_data() -> None:
    app = make_app()
    async with serving(app):
        assert await app.trigger_event("POST:/items/5", data={"name": "pen", "price": 1}) == {
            "id": 5,
            "name": "pen",
            "price": 1.0,
        }
        with pytest.raises(ValidationError) as info:
            await app.trigger_event("POST:/items/5")  # no request, no body: empty data
        assert [error["loc"] for error in info.value.errors()] == [("name",), ("price",)]
