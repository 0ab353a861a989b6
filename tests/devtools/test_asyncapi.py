"""AsyncAPI 3.0 and OpenAPI 3.1 documents of apps: valid against the specifications' JSON
Schemas (shipped with the tests, no network), and saying what the routes declare."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Dict, Generic, List, Literal, TypedDict, TypeVar

import jsonschema
import msgspec
import openapi_spec_validator
import pydantic
import pytest
import yaml

from tiny_listener import Context, Data, Listener, Param
from tiny_listener.amqp import AMQPListener
from tiny_listener.codecs import RawCodec
from tiny_listener.devtools.asyncapi import asyncapi_document
from tiny_listener.devtools.openapi import openapi_document
from tiny_listener.http import HTTPListener
from tiny_listener.mqtt import MQTTListener
from tiny_listener.nats import NATSListener
from tiny_listener.redis import RedisStreamListener
from tiny_listener.tcp import TCPListener

from ..cli_helpers import run_cli, write_module

ASYNCAPI_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "asyncapi-3.0.0.json").read_text())


def check_asyncapi(document: Dict[str, Any]) -> None:
    jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).validate(document)


class Line(pydantic.BaseModel):
    sku: str
    qty: int = 1


class Basket(pydantic.BaseModel):
    lines: List[Line]


class Shipping(msgspec.Struct):
    address: str


@dataclasses.dataclass
class Note:
    text: str
    mood: Literal["good", "bad"] = "good"


class Rating(TypedDict):
    stars: int


def shop() -> HTTPListener:
    app = HTTPListener(host="127.0.0.1", port=8080)

    @app.on_event("POST:/baskets/{basket_id:int}")
    async def create_basket(basket_id: Param, basket: Basket) -> None:
        """Create a basket.

        Each line is a product and a quantity."""

    @app.on_event("PUT:/ship/{order_id:uuid}")
    async def ship(order_id: Param, shipping: Shipping, urgent: Annotated[bool, Data] = False) -> None:
        pass

    @app.on_event("POST:/notes")
    async def note(note: Note, tag: Data) -> None:
        pass

    @app.on_event("GET:/hello/{name}")
    async def hello(name: Param) -> None:
        pass

    @app.on_event()
    async def fallback() -> None:
        pass

    return app


def test_an_http_app_gives_a_valid_asyncapi_document() -> None:
    document = asyncapi_document(shop(), title="shop", version="2.1.0")
    check_asyncapi(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {"title": "shop", "version": "2.1.0"}
    assert document["servers"] == {"http": {"host": "127.0.0.1:8080", "protocol": "http"}}
    channels, operations = document["channels"], document["operations"]
    assert list(channels) == ["create_basket", "ship", "note", "hello", "fallback"]
    assert channels["create_basket"]["address"] == "/baskets/{basket_id}"
    assert channels["create_basket"]["parameters"] == {
        "basket_id": {"description": "path parameter, convertor `int` ([0-9]+)"}
    }
    assert channels["fallback"]["address"] == "{_}"
    assert operations["create_basket"] == {
        "action": "receive",
        "channel": {"$ref": "#/channels/create_basket"},
        "messages": [{"$ref": "#/channels/create_basket/messages/create_basket"}],
        "summary": "Create a basket.",
        "description": "Each line is a product and a quantity.",
        "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
    }
    assert "bindings" not in operations["fallback"]


def test_messages_carry_the_json_schema_of_the_declared_data() -> None:
    components = asyncapi_document(shop())["components"]
    messages, schemas = components["messages"], components["schemas"]
    assert messages["create_basket"]["payload"] == {"$ref": "#/components/schemas/Basket"}
    assert schemas["Basket"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}
    assert schemas["Line"]["required"] == ["sku"]
    assert messages["ship"]["payload"] == {
        "allOf": [
            {"$ref": "#/components/schemas/Shipping"},
            {"type": "object", "properties": {"urgent": {"type": "boolean"}}},
        ]
    }
    assert schemas["Shipping"]["required"] == ["address"]
    assert messages["note"]["payload"]["allOf"][1] == {
        "type": "object",
        "properties": {"tag": {}},
        "required": ["tag"],
    }
    assert schemas["Note"] == {
        "title": "Note",
        "type": "object",
        "properties": {"text": {"type": "string"}, "mood": {"enum": ["good", "bad"], "type": "string"}},
        "required": ["text"],
    }
    assert "payload" not in messages["hello"]


T = TypeVar("T")


class Page(pydantic.BaseModel, Generic[T]):
    items: List[T]


def test_generic_models_get_valid_component_names() -> None:
    app = HTTPListener()

    @app.on_event("POST:/lines")
    async def lines(page: Page[Line]) -> None:
        pass

    document = asyncapi_document(app)
    check_asyncapi(document)
    assert document["components"]["messages"]["lines"]["payload"] == {"$ref": "#/components/schemas/Page_Line_"}
    openapi_spec_validator.validate(openapi_document(app))


def test_the_schema_check_is_not_a_formality() -> None:
    document = asyncapi_document(shop())
    broken = copy.deepcopy(document)
    broken["operations"]["hello"]["action"] = "subscribe"  # AsyncAPI 2's word, not 3's
    with pytest.raises(jsonschema.ValidationError):
        check_asyncapi(broken)
    broken = copy.deepcopy(document)
    broken["channels"]["hello"]["parameters"]["name"]["schema"] = {"type": "string"}  # not in 3.0
    with pytest.raises(jsonschema.ValidationError):
        check_asyncapi(broken)


def typed_routes(app: Listener[Any]) -> Listener[Any]:
    @app.on_event("orders/{region}/created")
    async def order_created(region: Param, rating: Rating, total: Annotated[float, Data]) -> None:
        pass

    @app.on_event("{_:path}")
    async def anything() -> None:
        pass

    return app


@pytest.mark.parametrize(
    ("make", "server"),
    [
        (
            lambda: RedisStreamListener(url="redis://user:secret@10.1.2.3:6380/2", streams=["orders", "audit"]),
            {
                "host": "10.1.2.3:6380",
                "protocol": "redis",
                "pathname": "/2",
                "description": "Redis Streams orders, audit, consumer group tiny-listener",
            },
        ),
        (
            lambda: MQTTListener(url="mqtts://user:pw@broker.local:8883"),
            {"host": "broker.local:8883", "protocol": "secure-mqtt"},
        ),
        (
            lambda: AMQPListener(url="amqp://guest:guest@127.0.0.1:5672/shop", queue="orders", exchange="events"),
            {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "pathname": "/shop",
                "description": "queue orders, exchange events",
            },
        ),
        (
            lambda: NATSListener(url="nats://127.0.0.1:4222", stream="ORDERS", durable="workers"),
            {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "JetStream stream ORDERS, durable consumer workers",
            },
        ),
        (lambda: TCPListener(port=9000), {"host": "127.0.0.1:9000", "protocol": "tcp", "description": "line frames"}),
    ],
)
def test_broker_and_tcp_listeners_name_their_server_without_credentials(make: Any, server: Dict[str, Any]) -> None:
    app = typed_routes(make())
    document = asyncapi_document(app)
    check_asyncapi(document)
    assert list(document["servers"].values()) == [server]
    assert "secret" not in json.dumps(document) and "guest" not in json.dumps(document)
    assert document["channels"]["order_created"]["address"] == "orders/{region}/created"
    payload = document["components"]["messages"]["order_created"]["payload"]
    assert payload == {
        "allOf": [
            {"$ref": "#/components/schemas/Rating"},
            {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]},
        ]
    }


def test_the_content_type_is_the_codecs() -> None:
    assert asyncapi_document(TCPListener())["defaultContentType"] == "application/octet-stream"
    assert asyncapi_document(TCPListener(codec=RawCodec()))["defaultContentType"] == "application/octet-stream"
    amqp = AMQPListener(queue="q", codec=RawCodec())
    assert asyncapi_document(amqp)["defaultContentType"] == "application/octet-stream"
    assert asyncapi_document(NATSListener(stream="S", durable="d"))["defaultContentType"] == "application/json"


def test_a_listener_of_another_kind_has_no_server() -> None:
    class App(Listener[Context]):
        async def listen(self) -> None:
            pass

    document = asyncapi_document(typed_routes(App()))
    check_asyncapi(document)
    assert "servers" not in document


def test_an_http_app_gives_a_valid_openapi_document() -> None:
    document = openapi_document(shop(), title="shop")
    openapi_spec_validator.validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "http://127.0.0.1:8080"}]
    paths = document["paths"]
    assert list(paths) == ["/baskets/{basket_id}", "/ship/{order_id}", "/notes", "/hello/{name}"]  # no catch-all
    create = paths["/baskets/{basket_id}"]["post"]
    assert create["operationId"] == "create_basket"
    assert create["parameters"] == [
        {
            "name": "basket_id",
            "in": "path",
            "required": True,
            "description": "convertor `int`",
            "schema": {"type": "integer", "minimum": 0},
        }
    ]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Basket"}
    assert create["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HTTPValidationError"
    }
    hello = paths["/hello/{name}"]["get"]
    assert "requestBody" not in hello and list(hello["responses"]) == ["200"]
    assert paths["/ship/{order_id}"]["put"]["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    assert {"Basket", "Line", "Shipping", "Note", "HTTPValidationError", "ValidationError"} <= set(
        document["components"]["schemas"]
    )


def test_openapi_documents_are_for_http_listeners_only() -> None:
    with pytest.raises(TypeError, match="describes an HTTPListener, not a TCPListener"):
        openapi_document(TCPListener())


APP = """
    from typing import Annotated
    from tiny_listener import Data, Param
    from tiny_listener.http import HTTPListener
    from tiny_listener.tcp import TCPListener

    app = HTTPListener(port=8000)
    tcp = TCPListener()


    @app.on_event("POST:/pay/{account}")
    async def pay(account: Param, amount: Annotated[int, Data]):
        \"\"\"Pay into an account.\"\"\"
"""


def test_the_asyncapi_command_prints_the_document_as_json_or_yaml(tmp_path: Path) -> None:
    write_module(tmp_path, "bank", APP)
    result = run_cli("asyncapi", "--app-dir", str(tmp_path), "bank:app")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    check_asyncapi(document)
    assert document["info"] == {"title": "bank:app", "version": "1.0.0"}
    assert document["components"]["messages"]["pay"] == {
        "name": "pay",
        "summary": "Pay into an account.",
        "payload": {"type": "object", "properties": {"amount": {"type": "integer"}}, "required": ["amount"]},
    }
    as_yaml = run_cli(
        "asyncapi", "--yaml", "--title", "Bank", "--app-version", "3", "--app-dir", str(tmp_path), "bank:app"
    )
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == {**document, "info": {"title": "Bank", "version": "3"}}


def test_the_openapi_command(tmp_path: Path) -> None:
    write_module(tmp_path, "bank", APP)
    result = run_cli("openapi", "--app-dir", str(tmp_path), "bank:app")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    openapi_spec_validator.validate(document)
    assert list(document["paths"]) == ["/pay/{account}"]
    refused = run_cli("openapi", "--app-dir", str(tmp_path), "bank:tcp")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "Error: an OpenAPI document describes an HTTPListener, not a TCPListener"


def test_yaml_without_pyyaml_names_the_extra(tmp_path: Path) -> None:
    write_module(tmp_path, "bank", APP)
    # A directory first on sys.path whose "yaml" cannot be imported, as if PyYAML were missing.
    blocker = tmp_path / "blocker"
    (blocker / "yaml").mkdir(parents=True)
    (blocker / "yaml" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'yaml'\", name='yaml')\n"
    )
    result = run_cli("asyncapi", "--yaml", "--app-dir", str(tmp_path), "bank:app", env={"PYTHONPATH": str(blocker)})
    assert result.returncode == 1
    assert "pip install 'tiny-listener[yaml]'" in result.stderr


class Invoice(pydantic.BaseModel):
    order: int
    total: float


def test_declared_destinations_are_send_operations_with_the_result_message() -> None:
    app: NATSListener[Any] = NATSListener(stream="ORDERS", durable="billing")

    @app.on_event("orders.{region}.{id:int}", publish_to="invoices.{id}")
    async def bill(id: Param, rating: Rating) -> Invoice:
        """Bill an order."""
        return Invoice(order=id, total=1.0)

    @app.on_event("audit.{what}")
    async def audit() -> None:
        pass

    document = asyncapi_document(app)
    check_asyncapi(document)
    assert document["channels"]["bill.result"] == {
        "address": "invoices.{id}",
        "parameters": {"id": {"description": "path parameter id of orders.{region}.{id}"}},
        "messages": {"bill.result": {"$ref": "#/components/messages/bill.result"}},
    }
    assert document["operations"]["bill.result"] == {
        "action": "send",
        "channel": {"$ref": "#/channels/bill.result"},
        "messages": [{"$ref": "#/channels/bill.result/messages/bill.result"}],
        "summary": "the result of bill, published once it succeeded",
    }
    assert document["components"]["messages"]["bill.result"] == {
        "name": "bill.result",
        "payload": {"$ref": "#/components/schemas/Invoice"},
    }
    assert document["components"]["schemas"]["Invoice"]["required"] == ["order", "total"]
    # NATS handlers answer requests: the reply goes to the inbox the request names.
    assert document["operations"]["bill"]["reply"] == {
        "channel": {"$ref": "#/channels/bill.reply"},
        "messages": [{"$ref": "#/channels/bill.reply/messages/bill.result"}],
        "address": {
            "description": "the inbox the request names in its x-reply-to header",
            "location": "$message.header#/x-reply-to",
        },
    }
    assert document["channels"]["bill.reply"]["address"] is None
    assert "audit.result" not in document["channels"]  # no destination
    assert "payload" not in document["components"]["messages"]["audit.result"]  # replies None


def test_listeners_without_replies_or_destinations_have_only_receive_operations() -> None:
    app = typed_routes(RedisStreamListener(streams=["orders"]))
    document = asyncapi_document(app)
    assert {operation["action"] for operation in document["operations"].values()} == {"receive"}
    assert not any("reply" in operation for operation in document["operations"].values())
    amqp = typed_routes(AMQPListener(queue="q"))
    reply = asyncapi_document(amqp)["operations"]["order_created"]["reply"]
    assert "address" not in reply  # reply_to is a property, not a header
    check_asyncapi(asyncapi_document(amqp))


def test_a_listener_hosting_several_sources_names_each_server() -> None:
    from tiny_listener.http import HTTPSource

    app: NATSListener[Any] = NATSListener(url="nats://127.0.0.1:4222", stream="ORDERS", durable="workers")
    app.add_source(HTTPSource(port=8080, health=True))

    @app.on_event("GET:/orders/{id}")
    async def show(id: Param) -> None:
        pass

    typed_routes(app)

    document = asyncapi_document(app)
    check_asyncapi(document)
    assert document["servers"]["nats"]["protocol"] == "nats"
    assert document["servers"]["http"] == {"host": "127.0.0.1:8080", "protocol": "http"}
    assert document["operations"]["show"]["bindings"]["http"]["method"] == "GET"
    # Requests come through the broker: its routes have a reply, the HTTP one answers over HTTP.
    assert "reply" in document["operations"]["order_created"]
    assert "reply" not in document["operations"]["show"]
