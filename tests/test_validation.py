"""The validators of declared types (tiny_listener.validation), driven directly: what the
built-in checker accepts and converts, the field errors it reports, and how pydantic's and
msgspec's errors are read in the same shape."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import sys
from typing import Any, Dict, FrozenSet, List, Literal, NewType, Optional, Tuple, Union

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # typing's TypedDict knows NotRequired from 3.11 on; pydantic brings typing_extensions
    from typing_extensions import NotRequired, TypedDict

import msgspec
import pydantic
import pydantic.dataclasses
import pytest

from tiny_listener.validation import (
    SchemaRegistry,
    is_payload_type,
    msgspec_field_errors,
    validator_for,
)


def check(tp: Any, value: Any) -> Any:
    return validator_for(tp).check(value)


def errors(tp: Any, value: Any) -> List[Tuple[Tuple[Any, ...], str]]:
    """The (loc, type) of every field error ``value`` has against ``tp``."""
    validator = validator_for(tp)
    with pytest.raises(validator.failures) as info:
        validator.check(value)
    return [(error["loc"], error["type"]) for error in validator.field_errors(info.value)]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Address:
    city: str
    zip_code: Optional[str] = None  # noqa: UP045 - resolved at run time, on Python 3.9 too


@dataclasses.dataclass
class Person:
    name: str
    age: int
    address: Address
    tags: List[str] = dataclasses.field(default_factory=list)


class Movie(TypedDict):
    title: str
    year: int


class PartialMovie(TypedDict, total=False):
    title: str
    rating: float


@dataclasses.dataclass
class Positive:
    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError("value must be positive")


@dataclasses.dataclass
class Tree:
    label: str
    children: List[Tree] = dataclasses.field(default_factory=list)


UserId = NewType("UserId", int)


@pytest.mark.parametrize(
    ("tp", "value", "expected"),
    [
        (int, 3, 3),
        (float, 3, 3.0),
        (float, 2.5, 2.5),
        (str, "x", "x"),
        (bool, False, False),
        (bytes, bytearray(b"ab"), b"ab"),
        (type(None), None, None),
        (Any, object, object),
        (List[int], (1, 2), [1, 2]),
        (list, [1, "a"], [1, "a"]),
        (Tuple[int, str], [1, "a"], (1, "a")),
        (Tuple[int, ...], [1, 2, 3], (1, 2, 3)),
        (FrozenSet[int], [1, 1, 2], frozenset({1, 2})),
        (Dict[str, float], {"a": 1}, {"a": 1.0}),
        (Optional[int], None, None),
        (Union[int, str], "x", "x"),
        (Literal["a", "b"], "b", "b"),
        (Color, "blue", Color.BLUE),
        (UserId, 7, 7),
        (Movie, {"title": "Alien", "year": 1979, "extra": 1}, {"title": "Alien", "year": 1979}),
        (PartialMovie, {}, {}),
    ],
)
def test_the_checker_accepts_json_values_of_the_declared_type(tp: Any, value: Any, expected: Any) -> None:
    result = check(tp, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("tp", "value", "error_type"),
    [
        (int, True, "int_type"),
        (int, 3.0, "int_type"),
        (int, "3", "int_type"),
        (float, "1.5", "float_type"),
        (float, False, "float_type"),
        (str, b"x", "string_type"),
        (bool, 1, "bool_type"),
        (bytes, "x", "bytes_type"),
        (type(None), 0, "none_required"),
        (List[int], "12", "list_type"),
        (Dict[str, int], [("a", 1)], "dict_type"),
        (Tuple[int, int], [1], "too_short"),
        (Tuple[int, int], [1, 2, 3], "too_long"),
        (Literal[1, 2], True, "literal_error"),
        (Literal["a"], "b", "literal_error"),
        (Color, "green", "enum"),
        (Movie, "Alien", "dict_type"),
        (Address, ["Paris"], "dataclass_type"),
    ],
)
def test_the_checker_is_strict_like_json(tp: Any, value: Any, error_type: str) -> None:
    assert errors(tp, value) == [((), error_type)]


def test_a_dataclass_is_built_from_a_mapping_with_nested_values_checked() -> None:
    person = check(Person, {"name": "Ann", "age": 41, "address": {"city": "Oslo"}, "unknown": 1})
    assert person == Person("Ann", 41, Address("Oslo"))
    assert check(Person, person) is person  # an instance is taken as it is


def test_every_error_is_reported_with_its_location() -> None:
    found = errors(Person, {"age": "41", "address": {"zip_code": 75}, "tags": ["a", 2, None]})
    assert found == [
        (("name",), "missing"),
        (("age",), "int_type"),
        (("address", "city"), "missing"),
        (("address", "zip_code"), "string_type"),
        (("tags", 1), "string_type"),
        (("tags", 2), "string_type"),
    ]


def test_a_union_reports_each_member_error_and_optional_only_its_type() -> None:
    assert errors(Union[int, str], 1.5) == [(("int",), "int_type"), (("str",), "string_type")]
    assert errors(Optional[int], "x") == [((), "int_type")]


def test_typed_dict_required_keys_and_dataclass_fields_not_in_init() -> None:
    class Event(TypedDict):
        name: str
        note: NotRequired[str]

    @dataclasses.dataclass
    class Counter:
        start: int
        count: int = dataclasses.field(init=False, default=0)

    assert check(Event, {"name": "a"}) == {"name": "a"}
    assert errors(Event, {"note": 1}) == [(("name",), "missing"), (("note",), "string_type")]
    assert check(Counter, {"start": 1, "count": "ignored"}) == Counter(1)


def test_post_init_value_errors_become_value_errors() -> None:
    assert check(Positive, {"value": 1}) == Positive(1)
    assert errors(Positive, {"value": 0}) == [((), "value_error")]


def test_recursive_dataclasses_are_checked_and_described_once() -> None:
    tree = check(Tree, {"label": "a", "children": [{"label": "b"}]})
    assert tree == Tree("a", [Tree("b")])
    assert errors(Tree, {"label": "a", "children": [{"label": 1}]}) == [(("children", 0, "label"), "string_type")]
    registry = SchemaRegistry("#/components/schemas/{name}")
    assert validator_for(Tree).schema(registry) == {"$ref": "#/components/schemas/Tree"}
    children = registry.definitions["Tree"]["properties"]["children"]
    assert children == {"type": "array", "items": {"$ref": "#/components/schemas/Tree"}}


def test_other_types_are_left_to_pydantic() -> None:
    assert check(datetime.date, "2024-02-29") == datetime.date(2024, 2, 29)
    assert errors(datetime.date, "2023-02-29") == [((), "date_from_datetime_parsing")]

    @dataclasses.dataclass
    class Booking:
        day: datetime.date
        nights: int

    assert check(Booking, {"day": "2024-01-02", "nights": 2}) == Booking(datetime.date(2024, 1, 2), 2)
    # The checker keeps its own strict rules around the pydantic leaf.
    assert errors(Booking, {"day": "x", "nights": "2"}) == [
        (("day",), "date_from_datetime_parsing"),
        (("nights",), "int_type"),
    ]


def test_pydantic_models_keep_their_own_rules_and_error_types() -> None:
    class Item(pydantic.BaseModel):
        name: str
        price: float = pydantic.Field(gt=0)

    assert check(Item, {"name": "pen", "price": "1.5"}) == Item(name="pen", price=1.5)
    assert errors(Item, {"price": -1}) == [(("name",), "missing"), (("price",), "greater_than")]


def test_pydantic_dataclasses_are_pydantics_to_validate() -> None:
    @pydantic.dataclasses.dataclass
    class Point:
        x: int

    assert check(Point, {"x": "3"}) == Point(3)  # pydantic's lax rules, not the checker's
    assert errors(Point, {"x": "three"}) == [(("x",), "int_parsing")]
    assert errors(List[Point], [{"x": 1}, {}]) == [((1, "x"), "missing")]


class Order(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    lines: List[str] = []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"lines": []}, [(("id",), "missing")]),
        ({"id": "1"}, [(("id",), "int_type")]),
        ({"id": 1, "lines": ["a", 2]}, [(("lines", 1), "string_type")]),
        ({"id": 1, "other": 2}, [(("other",), "extra_forbidden")]),
        ([1], [((), "dict_type")]),
    ],
)
def test_msgspec_errors_are_read_as_field_errors(value: Any, expected: List[Any]) -> None:
    assert errors(Order, value) == expected


def test_msgspec_messages_with_constraints_are_value_errors() -> None:
    class Bounded(msgspec.Struct):
        n: Any = None

    assert check(Bounded, {"n": 1}) == Bounded(1)
    error = msgspec.ValidationError("Expected `int` >= 0 - at `$.items[3].n`")
    assert msgspec_field_errors(error) == [
        {"loc": ("items", 3, "n"), "msg": "Expected `int` >= 0", "type": "value_error"}
    ]


def test_payload_types_are_models_structs_dataclasses_and_typed_dicts() -> None:
    class Model(pydantic.BaseModel):
        x: int

    assert all(is_payload_type(tp) for tp in (Model, Order, Person, Movie))
    assert not any(is_payload_type(tp) for tp in (int, dict, List[int], pydantic.BaseModel, msgspec.Struct))


def test_json_schemas_of_plain_types() -> None:
    registry = SchemaRegistry("#/defs/{name}")

    def schema(tp: Any) -> Any:
        return validator_for(tp).schema(registry)

    assert schema(int) == {"type": "integer"}
    assert schema(Optional[str]) == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema(Dict[str, List[float]]) == {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "number"}},
    }
    assert schema(Tuple[int, str]) == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert schema(Literal["a", "b"]) == {"enum": ["a", "b"], "type": "string"}
    assert schema(Color) == {"$ref": "#/defs/Color"}
    assert schema(Movie) == {"$ref": "#/defs/Movie"}
    assert registry.definitions["Movie"] == {
        "title": "Movie",
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
    }
    assert registry.definitions["Color"] == {"title": "Color", "enum": ["red", "blue"], "type": "string"}


def test_library_schemas_land_in_the_registry_and_names_do_not_clash() -> None:
    class Line(pydantic.BaseModel):
        sku: str

    class Basket(pydantic.BaseModel):
        lines: List[Line]

    registry = SchemaRegistry("#/components/schemas/{name}")
    assert validator_for(Basket).schema(registry) == {"$ref": "#/components/schemas/Basket"}
    assert registry.definitions["Basket"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}
    assert registry.definitions["Line"]["properties"] == {"sku": {"title": "Sku", "type": "string"}}
    assert validator_for(Order).schema(registry) == {"$ref": "#/components/schemas/Order"}

    @dataclasses.dataclass
    class Line2:  # a different type, registered under the name "Line"
        qty: int

    Line2.__name__ = "Line"
    assert validator_for(Line2).schema(registry) == {"$ref": "#/components/schemas/Line2"}
    assert "$defs" not in registry.definitions["Basket"]
