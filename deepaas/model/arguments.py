"""Reading a model's argument fields: files, lists, media types, validation.

Models describe their arguments with marshmallow/webargs fields in two
idioms: the marshmallow 3 keyword style (``missing=``, ``description=``,
``type="file"``, ``location="form"``) and the newer ``metadata=`` /
``load_default=`` style.  marshmallow 3 stores the old extra keywords in
``field.metadata`` and ``missing`` in ``load_default``, so both idioms are
read through the same attributes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import marshmallow
from marshmallow import fields, validate
from multidict import MultiDict
from webargs.multidictproxy import MultiDictProxy

from deepaas.exceptions import ArgumentsInvalid
from deepaas.model.files import UploadedFile

FieldMap = dict[str, fields.Field]


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


def parse_arguments(
    schema: marshmallow.Schema,
    pairs: Iterable[tuple[str, Any]],
    json_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert and validate raw request values with the model's fields.

    ``pairs`` are the (name, value) items of the query string and form, in
    order, repeated names included; list fields collect every value of their
    name.  ``json_body`` values (already typed) take precedence.  Raises
    :class:`ArgumentsInvalid` with the contract's flat error mapping.
    """
    multi = MultiDict(list(pairs))
    proxy = MultiDictProxy(multi, schema)
    raw: dict[str, Any] = {key: proxy[key] for key in set(multi.keys())}
    if json_body:
        raw.update(json_body)
    errors: dict[str, list[str]] = {}
    for name, field in schema.fields.items():
        value = raw.get(name)
        if name in raw and is_file_field(field) and not isinstance(value, UploadedFile):
            errors[name] = ["Not a valid file: send it as a multipart file part."]
    try:
        loaded = schema.load(raw)
    except marshmallow.ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {
            "_schema": exc.messages
        }
        errors = {**messages, **errors}
        raise ArgumentsInvalid(errors) from None
    if errors:
        raise ArgumentsInvalid(errors)
    return loaded
