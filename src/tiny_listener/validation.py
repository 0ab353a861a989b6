"""Typed event data: one validator per declared type, built when a handler is registered.

A handler declares the shape of the data it takes by annotation (see
:mod:`tiny_listener.injection`): a pydantic model, a msgspec ``Struct``, a dataclass or a
``TypedDict`` receives the whole event data converted to it; ``Annotated[int, Data]`` one key.
:func:`validator_for` turns such a type into a :class:`Validator` once: the function that
converts a value, the exceptions it raises when the value does not fit, how to read those as
field errors, and the type's JSON Schema. Nothing here runs per event but the check itself.

Who checks what, decided by the type alone (never by what happens to be installed):

- a pydantic model or pydantic dataclass: pydantic (extra ``pydantic``), with its own
  configuration;
- a msgspec ``Struct``: ``msgspec.convert`` (extra ``msgspec``), strict as msgspec is;
- dataclasses, ``TypedDict`` and the plain types ``bool``, ``int``, ``float``, ``str``,
  ``bytes``, ``None``, ``Any``, ``list``, ``tuple``, ``set``, ``frozenset``, ``dict``,
  ``Union``/``Optional``, ``Literal``, ``Enum`` and ``NewType``: the checker of this module,
  strict like JSON (see :func:`validator_for`);
- any other type (``datetime``, ``UUID``, ``Decimal``, ``Annotated`` with constraints such
  as ``Field(gt=0)``...): pydantic's ``TypeAdapter``; without pydantic, registering the handler
  fails and names the extra to install.

pydantic and msgspec are imported only when a handler uses them.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import sys
import typing
from typing import Any, Callable, Dict, List, Literal, Sequence, Set, Tuple, Type, Union

from .errors import FieldError
from .optional import MissingExtraError, require

JsonSchema = Dict[str, Any]
"""A JSON Schema, as a dict ready for ``json.dumps``."""

if sys.version_info >= (3, 10):
    from types import UnionType

    _UNION_TYPES: Tuple[Any, ...] = (Union, UnionType)
else:  # pragma: no cover - Python 3.9
    _UNION_TYPES = (Union,)


class UnsupportedType(TypeError):
    """A declared type cannot be validated; the message says why and what to do."""


class Invalid(Exception):
    """Raised by the checks of this module: ``errors`` lists what does not fit, with each
    ``loc`` relative to the value checked."""

    def __init__(self, errors: List[FieldError]) -> None:
        super().__init__(errors)
        self.errors = errors


def field_error(msg: str, type_: str, loc: Tuple[Union[str, int], ...] = ()) -> FieldError:
    """Return one field error."""
    return FieldError(loc=loc, msg=msg, type=type_)


def _prefixed(errors: Sequence[FieldError], key: Union[str, int]) -> List[FieldError]:
    return [FieldError(loc=(key, *error["loc"]), msg=error["msg"], type=error["type"]) for error in errors]


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SchemaRegistry:
    """Named JSON Schemas that several messages share (models, dataclasses...), each referenced
    as ``ref_template.format(name=NAME)``, for example ``"#/components/schemas/{name}"``.

    Two different types of the same name get distinct names (``Order``, ``Order2``).
    """

    def __init__(self, ref_template: str) -> None:
        self.ref_template = ref_template
        self.definitions: Dict[str, JsonSchema] = {}
        self._owners: Dict[str, object] = {}
        self._names: Dict[object, str] = {}

    def ref(self, name: str) -> JsonSchema:
        """Return ``{"$ref": ...}`` pointing at the definition ``name``."""
        return {"$ref": self.ref_template.format(name=name)}

    def name_for(self, owner: object, wanted: str) -> Tuple[str, bool]:
        """Return the name of ``owner``'s definition (reserving ``wanted`` or a free variant of
        it) and whether it was already there."""
        if owner in self._names:
            return self._names[owner], True
        # Component names are [A-Za-z0-9._-]: a generic model's "Page[Item]" becomes "Page_Item_".
        wanted = _NAME_UNSAFE.sub("_", wanted)
        name = wanted
        counter = 1
        while name in self._owners:
            counter += 1
            name = f"{wanted}{counter}"
        self._owners[name] = owner
        self._names[owner] = name
        return name, False

    def absorb(self, schema: JsonSchema, defs: Dict[str, JsonSchema], local_ref: str) -> JsonSchema:
        """Move the local definitions ``defs`` of ``schema`` (referenced as
        ``local_ref.format(name=...)``) into the registry and return ``schema`` pointing there.

        A definition already registered with the same content is shared, not repeated.
        """
        renames: Dict[str, str] = {}
        for name, definition in defs.items():
            key = ("schema", _freeze(definition))
            renames[local_ref.format(name=name)] = self.ref_template.format(name=self.name_for(key, name)[0])
        for name, definition in defs.items():
            new_name = renames[local_ref.format(name=name)].rsplit("/", 1)[-1]
            self.definitions[new_name] = _rewrite_refs(definition, renames)
        result: JsonSchema = _rewrite_refs(schema, renames)
        return result


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value


def _rewrite_refs(value: Any, renames: Dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: (renames.get(item, item) if key == "$ref" and isinstance(item, str) else _rewrite_refs(item, renames))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(item, renames) for item in value]
    return value


class Validator:
    """Converts values to one declared type.

    ``check(value)`` returns the converted value or raises one of ``failures``;
    ``field_errors(exc)`` reads such an exception as field errors (``loc`` relative to the
    value); ``schema(registry)`` returns the type's JSON Schema, putting named definitions in
    the registry.
    """

    __slots__ = ("check", "failures", "field_errors", "schema", "type")

    def __init__(
        self,
        type_: Any,
        check: Callable[[Any], Any],
        failures: Tuple[Type[Exception], ...],
        field_errors: Callable[[Any], List[FieldError]],
        schema: Callable[[SchemaRegistry], JsonSchema],
    ) -> None:
        self.type = type_
        self.check = check
        self.failures = failures
        self.field_errors = field_errors
        self.schema = schema

    def __repr__(self) -> str:
        return f"Validator({_type_name(self.type)})"


def _own_errors(exc: Invalid) -> List[FieldError]:
    return exc.errors


# ---------------------------------------------------------------------- what a type is


def _library_class(tp: Any, module: str, attribute: str) -> bool:
    """True if ``tp`` is a subclass of ``module.attribute``, without importing ``module``: a
    class can only derive from it if the module is already imported."""
    library = sys.modules.get(module)
    base = getattr(library, attribute, None) if library is not None else None
    return base is not None and isinstance(tp, type) and issubclass(tp, base) and tp is not base


def is_pydantic_model(tp: Any) -> bool:
    """True if ``tp`` is a pydantic (v2) model class."""
    return _library_class(tp, "pydantic", "BaseModel")


def is_pydantic_dataclass(tp: Any) -> bool:
    """True if ``tp`` is a pydantic dataclass (``@pydantic.dataclasses.dataclass``): pydantic
    validates it, with its own rules, as it does a model."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and hasattr(tp, "__pydantic_validator__")


def is_msgspec_struct(tp: Any) -> bool:
    """True if ``tp`` is a msgspec ``Struct`` class."""
    return _library_class(tp, "msgspec", "Struct")


def is_typeddict(tp: Any) -> bool:
    """True if ``tp`` is a ``TypedDict`` class (from ``typing`` or ``typing_extensions``)."""
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def is_payload_type(tp: Any) -> bool:
    """True if a parameter annotated ``tp`` receives the whole event data: ``tp`` is a pydantic
    model, a msgspec ``Struct``, a dataclass or a ``TypedDict``."""
    return isinstance(tp, type) and (
        dataclasses.is_dataclass(tp) or is_typeddict(tp) or is_pydantic_model(tp) or is_msgspec_struct(tp)
    )


def _type_name(tp: Any) -> str:
    if tp is type(None) or tp is None:
        return "none"
    name = getattr(tp, "__name__", None)
    return name if isinstance(name, str) else repr(tp).replace("typing.", "")


# ---------------------------------------------------------------------- building validators


def validator_for(tp: Any) -> Validator:
    """Return a :class:`Validator` for ``tp``.

    The built-in checker (dataclasses, ``TypedDict``, plain types) is strict like JSON:
    ``int`` takes an int (never a bool, a float or a numeric string), ``float`` an int or a
    float (returned as float), ``str`` a str, ``bool`` a bool, ``bytes`` bytes, ``list`` and
    ``tuple`` a list or tuple, ``set`` a list, tuple or set, ``dict`` a dict; a dataclass or
    ``TypedDict`` takes a dict (a dataclass also an instance of itself), ignores keys it does
    not declare and reports each missing required key; a ``Union`` takes the value as its
    first member that accepts it; a ``Literal`` one of its values (of the same type); an
    ``Enum`` a member's value. Every error in a value is reported, not only the first.

    Raises :class:`UnsupportedType` if ``tp`` cannot be validated (a forward reference that
    does not resolve), :class:`~tiny_listener.optional.MissingExtraError` if it needs pydantic
    or msgspec and that is not installed.
    """
    if is_pydantic_model(tp):
        return _pydantic_model_validator(tp)
    if is_pydantic_dataclass(tp):
        return _pydantic_adapter_validator(tp)
    if is_msgspec_struct(tp):
        return _msgspec_validator(tp)
    node = _Builder().node(tp)
    return Validator(tp, node.check, (Invalid,), _own_errors, node.schema)


class _Node:
    """A built-in check of one type and its JSON Schema; containers hold their items' nodes."""

    __slots__ = ("check", "schema")

    def __init__(
        self,
        check: Callable[[Any], Any] | None = None,
        schema: Callable[[SchemaRegistry], JsonSchema] | None = None,
    ) -> None:
        self.check: Callable[[Any], Any] = check or _unset
        self.schema: Callable[[SchemaRegistry], JsonSchema] = schema or _no_schema


def _unset(value: Any) -> Any:  # pragma: no cover - replaced before any check runs
    raise RuntimeError("validator used before it was built")


def _no_schema(registry: SchemaRegistry) -> JsonSchema:  # pragma: no cover - replaced when built
    return {}


def _simple(check: Callable[[Any], Any], schema: JsonSchema) -> _Node:
    return _Node(check, lambda registry: dict(schema))


def _check_any(value: Any) -> Any:
    return value


def _check_none(value: Any) -> Any:
    if value is None:
        return None
    raise Invalid([field_error("Input should be None", "none_required")])


def _check_bool(value: Any) -> Any:
    if value is True or value is False:
        return value
    raise Invalid([field_error("Input should be a valid boolean", "bool_type")])


def _check_int(value: Any) -> Any:
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise Invalid([field_error("Input should be a valid integer", "int_type")])


def _check_float(value: Any) -> Any:
    if type(value) is float:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise Invalid([field_error("Input should be a valid number", "float_type")])


def _check_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise Invalid([field_error("Input should be a valid string", "string_type")])


def _check_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise Invalid([field_error("Input should be a valid bytes", "bytes_type")])


ANY = _simple(_check_any, {})
_SIMPLE: Dict[Any, _Node] = {
    Any: ANY,
    object: ANY,
    None: _simple(_check_none, {"type": "null"}),
    type(None): _simple(_check_none, {"type": "null"}),
    bool: _simple(_check_bool, {"type": "boolean"}),
    int: _simple(_check_int, {"type": "integer"}),
    float: _simple(_check_float, {"type": "number"}),
    str: _simple(_check_str, {"type": "string"}),
    bytes: _simple(_check_bytes, {"type": "string", "format": "binary"}),
}

# Bare classes, typing aliases and what get_origin() gives for them (collections.abc classes).
def _with_origins(*aliases: Any) -> Set[Any]:
    return set(aliases) | {typing.get_origin(alias) for alias in aliases} - {None}


_LIST_ORIGINS = _with_origins(list, typing.List, Sequence, typing.MutableSequence)
_SET_ORIGINS = _with_origins(set, frozenset, typing.Set, typing.FrozenSet, typing.AbstractSet, typing.MutableSet)
_DICT_ORIGINS = _with_origins(dict, typing.Dict, typing.Mapping, typing.MutableMapping)
_TUPLE_ORIGINS = _with_origins(tuple, typing.Tuple)
_TYPED_DICT_WRAPPERS = {"Required", "NotRequired", "ReadOnly"}


class _Builder:
    """Builds the nodes of one declared type; a class met twice (a recursive dataclass) gets
    one node."""

    def __init__(self) -> None:
        self._classes: Dict[Any, _Node] = {}

    def node(self, tp: Any) -> _Node:
        if isinstance(tp, (str, typing.ForwardRef)):
            raise UnsupportedType(f"the annotation {tp!r} is a forward reference that was not resolved")
        try:
            simple = _SIMPLE.get(tp)
        except TypeError:  # an unhashable annotation
            simple = None
        if simple is not None:
            return simple
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            # Constraints (Field(gt=0), annotated_types...) are pydantic's to check.
            return self.pydantic_leaf(tp)
        if origin in _UNION_TYPES:
            return self.union(args)
        if origin is Literal:
            return _literal(args)
        container = origin if origin is not None else tp
        if container in _LIST_ORIGINS:
            return self.sequence(args[0] if args else Any, list, "list")
        if container in _SET_ORIGINS:
            return self.sequence(args[0] if args else Any, set if container is not frozenset else frozenset, "set")
        if container in _TUPLE_ORIGINS:
            return self.tuple_(args)
        if container in _DICT_ORIGINS:
            return self.mapping(args[0] if args else Any, args[1] if len(args) > 1 else Any)
        supertype = getattr(tp, "__supertype__", None)
        if supertype is not None:  # typing.NewType
            return self.node(supertype)
        if is_pydantic_model(tp):
            return _leaf(_pydantic_model_validator(tp))
        if is_pydantic_dataclass(tp):
            return _leaf(_pydantic_adapter_validator(tp))
        if is_msgspec_struct(tp):
            return _leaf(_msgspec_validator(tp))
        if isinstance(tp, type):
            if issubclass(tp, enum.Enum):
                return _enum(tp)
            if dataclasses.is_dataclass(tp):
                return self.record(tp, dataclass=True)
            if is_typeddict(tp):
                return self.record(tp, dataclass=False)
        return self.pydantic_leaf(tp)

    def pydantic_leaf(self, tp: Any) -> _Node:
        try:
            require("pydantic", "pydantic")
        except MissingExtraError as exc:
            raise MissingExtraError(f"{exc} (needed to validate {_type_name(tp)})") from exc
        return _leaf(_pydantic_adapter_validator(tp))

    def union(self, args: Tuple[Any, ...]) -> _Node:
        nullable = type(None) in args
        members = [(_type_name(arg), self.node(arg)) for arg in args if arg is not type(None)]
        single = len(members) == 1

        def check(value: Any) -> Any:
            if value is None and nullable:
                return None
            errors: List[FieldError] = []
            for name, member in members:
                try:
                    return member.check(value)
                except Invalid as exc:
                    errors.extend(exc.errors if single else _prefixed(exc.errors, name))
            raise Invalid(errors)

        def schema(registry: SchemaRegistry) -> JsonSchema:
            options = [member.schema(registry) for _, member in members]
            if nullable:
                options.append({"type": "null"})
            return options[0] if len(options) == 1 else {"anyOf": options}

        return _Node(check, schema)

    def sequence(self, item_type: Any, kind: Type[Any], label: str) -> _Node:
        item = self.node(item_type)
        accepted: Tuple[Type[Any], ...] = (list, tuple) if kind is list else (list, tuple, set, frozenset)
        message = f"Input should be a valid {label}"

        def check(value: Any) -> Any:
            if not isinstance(value, accepted):
                raise Invalid([field_error(message, f"{label}_type")])
            if item is ANY:
                return kind(value)
            out = []
            errors: List[FieldError] | None = None
            for index, element in enumerate(value):
                try:
                    out.append(item.check(element))
                except Invalid as exc:
                    errors = (errors or []) + _prefixed(exc.errors, index)
            if errors:
                raise Invalid(errors)
            return out if kind is list else kind(out)

        def schema(registry: SchemaRegistry) -> JsonSchema:
            result: JsonSchema = {"type": "array"}
            if item is not ANY:
                result["items"] = item.schema(registry)
            if kind is not list:
                result["uniqueItems"] = True
            return result

        return _Node(check, schema)

    def tuple_(self, args: Tuple[Any, ...]) -> _Node:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            variable = self.sequence(args[0] if args else Any, list, "tuple")
            check_list = variable.check
            return _Node(lambda value: tuple(check_list(value)), variable.schema)
        if args == ((),):  # Tuple[()]: the empty tuple
            args = ()
        items = [self.node(arg) for arg in args]
        size = len(items)

        def check(value: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise Invalid([field_error("Input should be a valid tuple", "tuple_type")])
            if len(value) != size:
                kind = "too_short" if len(value) < size else "too_long"
                raise Invalid([field_error(f"Tuple should have {size} items, not {len(value)}", kind)])
            out = []
            errors: List[FieldError] | None = None
            for index, (node, element) in enumerate(zip(items, value)):
                try:
                    out.append(node.check(element))
                except Invalid as exc:
                    errors = (errors or []) + _prefixed(exc.errors, index)
            if errors:
                raise Invalid(errors)
            return tuple(out)

        def schema(registry: SchemaRegistry) -> JsonSchema:
            return {
                "type": "array",
                "prefixItems": [node.schema(registry) for node in items],
                "minItems": size,
                "maxItems": size,
            }

        return _Node(check, schema)

    def mapping(self, key_type: Any, value_type: Any) -> _Node:
        key = self.node(key_type)
        item = self.node(value_type)

        def check(value: Any) -> Any:
            if not isinstance(value, dict):
                raise Invalid([field_error("Input should be a valid dictionary", "dict_type")])
            if key is ANY and item is ANY:
                return dict(value)
            out = {}
            errors: List[FieldError] | None = None
            for name, element in value.items():
                try:
                    out[key.check(name)] = item.check(element)
                except Invalid as exc:
                    errors = (errors or []) + _prefixed(
                        exc.errors, name if isinstance(name, (str, int)) else repr(name)
                    )
            if errors:
                raise Invalid(errors)
            return out

        def schema(registry: SchemaRegistry) -> JsonSchema:
            result: JsonSchema = {"type": "object"}
            if item is not ANY:
                result["additionalProperties"] = item.schema(registry)
            return result

        return _Node(check, schema)

    def record(self, cls: Any, *, dataclass: bool) -> _Node:
        """A dataclass or a TypedDict: a dict whose declared keys are checked."""
        known = self._classes.get(cls)
        if known is not None:
            return known
        node = self._classes[cls] = _Node()
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:
            raise UnsupportedType(f"the annotations of {cls.__qualname__} cannot be resolved: {exc!r}") from exc
        fields: List[Tuple[str, _Node, bool]] = []
        if dataclass:
            for field in dataclasses.fields(cls):
                if field.init:
                    has_default = (
                        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
                    )
                    fields.append((field.name, self.node(hints.get(field.name, Any)), not has_default))
        else:
            required_keys = cls.__required_keys__
            for name, hint in hints.items():
                required = name in required_keys
                # Read from the resolved hint too: with string annotations (``from __future__
                # import annotations``) the class could not see Required/NotRequired.
                while (wrapper := getattr(typing.get_origin(hint), "_name", None)) in _TYPED_DICT_WRAPPERS:
                    if wrapper != "ReadOnly":
                        required = wrapper == "Required"
                    hint = typing.get_args(hint)[0]
                fields.append((name, self.node(hint), required))
        title = cls.__name__
        wrong_type = (
            field_error(f"Input should be a dictionary or an instance of {title}", "dataclass_type")
            if dataclass
            else field_error("Input should be a valid dictionary", "dict_type")
        )

        def check(value: Any) -> Any:
            if dataclass and isinstance(value, cls):
                return value
            if not isinstance(value, dict):
                raise Invalid([wrong_type])
            out: Dict[str, Any] = {}
            errors: List[FieldError] | None = None
            for name, field_node, required in fields:
                try:
                    raw = value[name]
                except KeyError:
                    if required:
                        errors = (errors or []) + [field_error("Field required", "missing", (name,))]
                    continue
                try:
                    out[name] = field_node.check(raw)
                except Invalid as exc:
                    errors = (errors or []) + _prefixed(exc.errors, name)
            if errors:
                raise Invalid(errors)
            if not dataclass:
                return out
            try:
                return cls(**out)
            except (ValueError, AssertionError) as exc:  # raised by __post_init__: the value is wrong
                raise Invalid([field_error(f"Value error, {exc}", "value_error")]) from None

        def schema(registry: SchemaRegistry) -> JsonSchema:
            name, known = registry.name_for(cls, title)
            if not known:
                registry.definitions[name] = {}  # reserved: a recursive field refers to it
                properties = {field_name: field_node.schema(registry) for field_name, field_node, _ in fields}
                definition: JsonSchema = {"title": title, "type": "object", "properties": properties}
                required = [field_name for field_name, _, is_required in fields if is_required]
                if required:
                    definition["required"] = required
                registry.definitions[name] = definition
            return registry.ref(name)

        node.check = check
        node.schema = schema
        return node


def _literal(values: Tuple[Any, ...]) -> _Node:
    expected = _either([repr(value) for value in values])
    pairs = [(type(value), value) for value in values]

    def check(value: Any) -> Any:
        for kind, allowed in pairs:
            if type(value) is kind and value == allowed:
                return allowed
        raise Invalid([field_error(f"Input should be {expected}", "literal_error")])

    def schema(registry: SchemaRegistry) -> JsonSchema:
        json_values = [value.value if isinstance(value, enum.Enum) else value for value in values]
        result: JsonSchema = {"const": json_values[0]} if len(json_values) == 1 else {"enum": json_values}
        types = {_json_type(value) for value in json_values}
        if len(types) == 1 and None not in types:
            result["type"] = types.pop()
        return result

    return _Node(check, schema)


def _enum(cls: Type[enum.Enum]) -> _Node:
    values = [member.value for member in cls]
    expected = _either([repr(value) for value in values])

    def check(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            raise Invalid([field_error(f"Input should be {expected}", "enum")]) from None

    def schema(registry: SchemaRegistry) -> JsonSchema:
        name, known = registry.name_for(cls, cls.__name__)
        if not known:
            definition: JsonSchema = {"title": cls.__name__, "enum": values}
            types = {_json_type(value) for value in values}
            if len(types) == 1 and None not in types:
                definition["type"] = types.pop()
            registry.definitions[name] = definition
        return registry.ref(name)

    return _Node(check, schema)


def _either(items: List[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _leaf(validator: Validator) -> _Node:
    """A node that runs another library's validator and reads its errors as ours."""
    check_value, failures, read_errors = validator.check, validator.failures, validator.field_errors

    def check(value: Any) -> Any:
        try:
            return check_value(value)
        except failures as exc:
            raise Invalid(read_errors(exc)) from None

    return _Node(check, validator.schema)


# ---------------------------------------------------------------------- pydantic


def _pydantic_errors(exc: Any) -> List[FieldError]:
    return [
        field_error(error["msg"], error["type"], tuple(error["loc"]))
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _pydantic_model_validator(model: Any) -> Validator:
    pydantic = require("pydantic", "pydantic")
    if not model.__pydantic_complete__:
        try:
            model.model_rebuild()
        except Exception as exc:
            raise UnsupportedType(f"pydantic model {model.__qualname__} is not complete: {exc}") from exc

    def schema(registry: SchemaRegistry) -> JsonSchema:
        name, known = registry.name_for(model, model.__name__)
        if not known:
            full = model.model_json_schema(ref_template="#/$defs/{model}")
            defs = full.pop("$defs", {})
            registry.definitions[name] = registry.absorb(full, defs, "#/$defs/{name}")
        return registry.ref(name)

    # The model's own validator: what model_validate() calls, without its Python frame.
    check = model.__pydantic_validator__.validate_python
    return Validator(model, check, (pydantic.ValidationError,), _pydantic_errors, schema)


def _pydantic_adapter_validator(tp: Any) -> Validator:
    pydantic = require("pydantic", "pydantic")
    try:
        adapter = pydantic.TypeAdapter(tp)
    except Exception as exc:
        raise UnsupportedType(f"pydantic cannot validate {_type_name(tp)}: {exc}") from exc

    def schema(registry: SchemaRegistry) -> JsonSchema:
        full = adapter.json_schema(ref_template="#/$defs/{model}")
        defs = full.pop("$defs", {})
        result: JsonSchema = registry.absorb(full, defs, "#/$defs/{name}")
        return result

    return Validator(tp, adapter.validate_python, (pydantic.ValidationError,), _pydantic_errors, schema)


# ---------------------------------------------------------------------- msgspec

# "Expected `int`, got `str` - at `$.items[0].price`"
_MSGSPEC_MESSAGE = re.compile(r"(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?\Z", re.S)
_MSGSPEC_PATH = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[([^\]]*)\]")
_MSGSPEC_FIELD = re.compile(r"Object (missing required|contains unknown) field `(?P<field>[^`]*)`\Z")
_MSGSPEC_TYPE = re.compile(r"Expected `(?P<expected>\w+)`, got `")
_MSGSPEC_TYPE_NAMES = {
    "int": "int_type",
    "float": "float_type",
    "str": "string_type",
    "bool": "bool_type",
    "bytes": "bytes_type",
    "array": "list_type",
    "object": "dict_type",
    "null": "none_required",
}


def msgspec_field_errors(exc: Exception) -> List[FieldError]:
    """Read a ``msgspec.ValidationError`` (msgspec reports the first error only) as a field
    error: its path becomes ``loc``, ``type`` is ``missing``, ``extra_forbidden``, a
    ``<kind>_type`` for a wrong JSON type, else ``value_error``."""
    match = _MSGSPEC_MESSAGE.match(str(exc))
    assert match is not None  # the pattern matches any text
    message = match.group("msg")
    loc: List[Union[str, int]] = []
    for name, index, key in _MSGSPEC_PATH.findall(match.group("path") or ""):
        loc.append(int(index) if index else name or key)
    field = _MSGSPEC_FIELD.match(message)
    if field is not None:
        loc.append(field.group("field"))
        if message.startswith("Object missing"):
            return [field_error("Field required", "missing", tuple(loc))]
        return [field_error("Extra inputs are not permitted", "extra_forbidden", tuple(loc))]
    expected = _MSGSPEC_TYPE.match(message)
    kind = _MSGSPEC_TYPE_NAMES.get(expected.group("expected"), "type_error") if expected else "value_error"
    return [field_error(message, kind, tuple(loc))]


def _msgspec_validator(struct: Any) -> Validator:
    msgspec = require("msgspec", "msgspec")
    convert = msgspec.convert

    def check(value: Any) -> Any:
        return convert(value, struct)

    def schema(registry: SchemaRegistry) -> JsonSchema:
        (top,), defs = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
        result: JsonSchema = registry.absorb(top, defs, "#/$defs/{name}")
        return result

    return Validator(struct, check, (msgspec.ValidationError,), msgspec_field_errors, schema)
