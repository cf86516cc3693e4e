"""Reading a model's argument fields: files, lists, media types, validation.

Models describe their arguments with marshmallow/webargs fields in two
idioms: the marshmallow 3 keyword style (``missing=``, ``description=``,
``type="file"``, ``location="form"``) and the newer ``metadata=`` /
``load_default=`` style.  marshmallow 3 stores the old extra keywords in
``field.metadata`` and ``missing`` in ``load_default``, so both idioms are
read through the same attributes here.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import marshmallow
from marshmallow import fields, validate
from marshmallow.utils import set_value
from multidict import MultiDict
from webargs.multidictproxy import MultiDictProxy

from deepaas.exceptions import ArgumentsInvalid
from deepaas.model.files import UploadedFile

FieldMap = dict[str, fields.Field]

#: Told of each value that converts but fails its field's validators, when the
#: caller lets such values through: (argument name, converted value, messages).
WaivedCheck = Callable[[str, Any, Any], None]


def is_file_field(field: fields.Field) -> bool:
    """Whether the model expects an uploaded file for this field."""
    meta = field.metadata
    if meta.get("type") == "file":
        return True
    return type(field) in (fields.Field, fields.Raw) and meta.get("location") in (
        "form",
        "files",
    )


def field_location(field: fields.Field) -> str:
    """Where the argument is documented: ``query``, ``formData`` or ``header``."""
    if is_file_field(field):
        return "formData"
    location = field.metadata.get("location")
    if location in ("form", "files", "formData", "json"):
        return "formData"
    if location in ("headers", "header"):
        return "header"
    return "query"


def accept_choices(arg_fields: Mapping[str, fields.Field]) -> list[str]:
    """Media types offered through an ``accept`` argument validated by OneOf."""
    field = arg_fields.get("accept")
    if field is None:
        return []
    validators = field.validators if hasattr(field, "validators") else []
    for validator in validators:
        if isinstance(validator, validate.OneOf):
            return [str(choice) for choice in validator.choices]
    default = field.load_default
    if isinstance(default, str):
        return [default]
    return []


def build_schema(
    arg_fields: Mapping[str, fields.Field], name: str
) -> marshmallow.Schema:
    """A marshmallow Schema holding the model's fields.

    Unknown arguments are ignored, as the existing DEEPaaS did, so clients
    that send extra form fields keep working.
    """
    schema_cls = marshmallow.Schema.from_dict(dict(arg_fields), name=name)
    return schema_cls(unknown=marshmallow.EXCLUDE)


_NUMBER_TYPES = {fields.Float: (int, float), fields.Integer: (int,)}


@dataclasses.dataclass(frozen=True)
class _LoadPlan:
    """What loading a schema's arguments needs, worked out once per schema."""

    # (attribute, key in the request, field) for every loadable field
    loadable: tuple[tuple[str, str, fields.Field], ...]
    # fields that expect an uploaded file
    file_fields: frozenset[str]
    # list-of-number fields whose JSON values skip per-element loading
    number_lists: dict[str, fields.List]
    # request keys of list fields (a form value may hold a JSON list)
    list_keys: frozenset[str]


def _load_plan(schema: marshmallow.Schema) -> _LoadPlan:
    cached = schema.__dict__.get("_deepaas_load_plan")
    if cached is not None:
        return cached
    plan = _LoadPlan(
        loadable=tuple(
            (attr, field.data_key if field.data_key is not None else attr, field)
            for attr, field in schema.load_fields.items()
        ),
        file_fields=frozenset(
            name for name, field in schema.fields.items() if is_file_field(field)
        ),
        number_lists=_plain_number_list_fields(schema),
        list_keys=frozenset(
            field.data_key if field.data_key is not None else attr
            for attr, field in schema.load_fields.items()
            if isinstance(field, fields.List)
        ),
    )
    schema.__dict__["_deepaas_load_plan"] = plan
    return plan


def _plain_number_list_fields(schema: marshmallow.Schema) -> dict[str, fields.List]:
    """List-of-number fields whose JSON values can skip per-element loading.

    A ``List(Float())`` of 784 pixels costs marshmallow milliseconds per
    request (one field call per element); when the inner field is a plain
    Float/Integer with no validators, checking the element types and the
    list's own validators gives the same result for a fraction of that.
    """
    fast: dict[str, fields.List] = {}
    for name, field in schema.fields.items():
        if type(field) is not fields.List or field.data_key or field.attribute:
            continue
        inner = field.inner
        if type(inner) not in _NUMBER_TYPES or inner.validators:
            continue
        if getattr(inner, "as_string", False) or getattr(inner, "allow_nan", False):
            continue
        fast[name] = field
    return fast


def _load_number_list(field: fields.List, value: Any) -> list[Any] | None:
    """The loaded list, or None when the value needs marshmallow's full path."""
    if not isinstance(value, list):
        return None
    accepted = _NUMBER_TYPES[type(field.inner)]
    for item in value:
        if type(item) not in accepted:  # bool, str, None: full path and messages
            return None
    if type(field.inner) is fields.Float:
        converted = [float(item) for item in value]
        if not all(math.isfinite(item) for item in converted):
            return None
        return converted
    return list(value)


def _literal_list(values: Any) -> Any:
    """A list written as one JSON (or Python) literal, e.g. ``features=[1,2,3]``.

    Form fields and query values are strings; deepaas-cli already takes a
    list argument as a literal, so one value that reads as a list literal
    is that list.  Anything else (repeated fields included) is left as is.
    """
    if not (isinstance(values, list) and len(values) == 1):
        return values
    text = values[0]
    if not isinstance(text, str) or not text.lstrip().startswith("["):
        return values
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        try:
            parsed = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return values
    return parsed if isinstance(parsed, list) else values


def _without_validators(field: fields.Field) -> fields.Field:
    """A copy of ``field`` that converts values but checks none of them.

    The validators of a list's items go too (``List(Str(validate=OneOf))``).
    """
    lenient = copy.copy(field)
    lenient.validators = []
    if isinstance(field, fields.List) and isinstance(lenient, fields.List):
        lenient.inner = _without_validators(field.inner)
    return lenient


def _load_fields(
    plan: _LoadPlan,
    raw: Mapping[str, Any],
    skip: Mapping[str, Any],
    errors: dict[str, Any],
    waive: WaivedCheck | None = None,
) -> dict[str, Any]:
    """Deserialize every field as ``Schema.load`` does, field by field.

    The schemas are built by :func:`build_schema` from a plain field mapping,
    so they have no hooks or schema validators: what ``Schema.load`` adds
    around the fields' own ``deserialize`` is bookkeeping that costs more
    than the fields themselves on small requests.  Errors are collected
    under the request key, as marshmallow does.  With ``waive``, a value
    that converts but fails only a validator is loaded and reported to it.
    """
    loaded: dict[str, Any] = {}
    for attr, key, field in plan.loadable:
        if attr in skip:
            continue
        given = raw.get(key, marshmallow.missing)
        try:
            value = field.deserialize(given, key, raw)
        except marshmallow.ValidationError as exc:
            if waive is None:
                errors[key] = exc.messages
                continue
            try:
                value = _without_validators(field).deserialize(given, key, raw)
            except marshmallow.ValidationError:
                errors[key] = exc.messages
                continue
            waive(key, value, exc.messages)
        if value is marshmallow.missing:
            continue
        if field.attribute:
            set_value(loaded, field.attribute, value)  # may be a dotted path
        else:
            loaded[attr] = value
    return loaded


def parse_arguments(
    schema: marshmallow.Schema,
    pairs: Iterable[tuple[str, Any]],
    json_body: Mapping[str, Any] | None = None,
    *,
    waive: WaivedCheck | None = None,
) -> dict[str, Any]:
    """Convert and validate raw request values with the model's fields.

    ``pairs`` are the (name, value) items of the query string and form, in
    order, repeated names included; list fields collect every value of their
    name.  ``json_body`` values (already typed) take precedence.  Raises
    :class:`ArgumentsInvalid` with the contract's flat error mapping.

    ``waive`` lets values through that convert but fail only a validator
    (a choice, a range), as DEEPaaS 2.x's deepaas-cli did: each one is
    reported to it instead of being an error.
    """
    plan = _load_plan(schema)
    pairs = list(pairs)
    raw: Mapping[str, Any] = json_body or {}  # only read from here on
    if pairs:
        multi = MultiDict(pairs)
        proxy = MultiDictProxy(multi, schema)
        given = {key: proxy[key] for key in set(multi.keys())}
        for key in plan.list_keys.intersection(given):
            given[key] = _literal_list(given[key])
        raw = given | dict(raw)
    errors: dict[str, Any] = {}
    for name in plan.file_fields:
        if name in raw and not isinstance(raw[name], UploadedFile):
            errors[name] = ["Not a valid file: send it as a multipart file part."]
    preloaded: dict[str, Any] = {}
    for name, field in plan.number_lists.items():
        if name not in raw:
            continue
        loaded_list = _load_number_list(field, raw[name])
        if loaded_list is None:
            continue
        preloaded[name] = loaded_list
        try:
            for validator in field.validators:
                if validator(loaded_list) is False:
                    raise marshmallow.ValidationError(
                        field.error_messages.get("validator_failed", "Invalid value.")
                    )
        except marshmallow.ValidationError as exc:
            if waive is None:
                errors[name] = exc.messages
            else:
                waive(name, loaded_list, exc.messages)
    field_errors: dict[str, Any] = {}
    loaded = _load_fields(plan, raw, preloaded, field_errors, waive)
    if errors or field_errors:
        raise ArgumentsInvalid({**field_errors, **errors})
    if preloaded:
        loaded.update(preloaded)
    return loaded
