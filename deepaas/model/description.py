"""A JSON-able description of a served model, made where the model lives.

Worker processes import the model; the HTTP process does not (so that it
stays small).  A worker therefore describes its model once: metadata, its
arguments (:class:`ArgumentSpec`: where each is sent, its type, and its
schema for the API descriptions), the media types it can answer with, and
its response schema.  The API layer builds its routes and
API descriptions from this alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from deepaas.model.arguments import field_location, is_file_field

RESPONSE_SCHEMA_NAME = "ModelPredictionResponse"


#: Where a client sends an argument: the query string, a form or JSON body
#: (multipart or url-encoded, files included), or a request header.
LOCATIONS = ("query", "form", "header")

_LOCATION_OF = {"query": "query", "formData": "form", "header": "header"}


@dataclasses.dataclass(frozen=True)
class ArgumentSpec:
    """One argument of predict or train, as clients send it.

    Computed once from the model's field where the model lives, and read
    by everything else: the HTTP layer (where to take the value from),
    batch runs (how to read ``--arg``) and the API descriptions, which
    render their parameters from it.  ``type`` is the JSON type of the
    value (``string``, ``integer``, ``number``, ``boolean``, ``array``,
    ``object``) or ``file`` for an uploaded file; ``is_list``: a list sent
    as repeated values.  ``schema_v2`` and ``schema_v3`` hold the field's
    full schema (default, enum, bounds...) as Swagger 2 and OpenAPI 3.1
    write it, for the API descriptions only.
    """

    name: str
    location: str
    type: str
    required: bool
    description: str = ""
    is_list: bool = False
    schema_v2: dict[str, Any] = dataclasses.field(default_factory=dict)
    schema_v3: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.type == "file"


@dataclasses.dataclass
class MethodDescription:
    """How one model method (predict or train) is called."""

    available: bool
    #: The arguments, in declaration order.
    args: list[ArgumentSpec] = dataclasses.field(default_factory=list)

    @property
    def arguments(self) -> list[str]:
        """Names of all arguments, in declaration order."""
        return [arg.name for arg in self.args]

    @property
    def file_arguments(self) -> list[str]:
        """Names of the file arguments."""
        return [arg.name for arg in self.args if arg.is_file]


@dataclasses.dataclass
class ModelDescription:
    """Everything the HTTP layer needs to know about a served model."""

    name: str
    metadata: dict[str, Any]
    predict: MethodDescription
    train: MethodDescription
    #: Media types the client may ask for through Accept; empty means JSON.
    accept: list[str] = dataclasses.field(default_factory=list)
    #: Swagger 2 ``definitions`` of the response schema (and nested ones).
    response_definitions_v2: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: OpenAPI 3 ``components.schemas`` of the response schema.
    response_schemas_v3: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Resources the model declared, e.g. ``{"gpus": 1}``.
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Whether the model offers ``predict_batch`` for dynamic batching.
    batching: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def has_response_schema(self) -> bool:
        return bool(self.response_definitions_v2)


def _converter(openapi_version: str) -> Any:
    plugin = MarshmallowPlugin()
    APISpec("model", "1", openapi_version, plugins=[plugin])
    return plugin.converter


def describe_method(
    arg_fields: Mapping[str, fields.Field] | None, *, available: bool
) -> MethodDescription:
    """Describe the arguments of one method (:class:`ArgumentSpec` each)."""
    desc = MethodDescription(available=available)
    if not arg_fields:
        return desc
    conv2 = _converter("2.0")
    conv3 = _converter("3.1.0")
    for name, field in arg_fields.items():
        schema_v2 = conv2.field2property(field)
        is_file = is_file_field(field)
        if is_file:
            kind = "file"
        elif "type" in schema_v2:
            kind = schema_v2["type"]
        else:
            kind = untyped_type(schema_v2.get("default"))
        description = schema_v2.get("description", "")
        desc.args.append(
            ArgumentSpec(
                name=name,
                location=_LOCATION_OF[field_location(field)],
                type=kind,
                required=bool(conv2.field2required(field)["required"]),
                description=description if isinstance(description, str) else "",
                is_list=isinstance(field, fields.List),
                schema_v2=schema_v2,
                schema_v3=conv3.field2property(field),
            )
        )
    return desc


def untyped_type(default: Any) -> str:
    """The type of a ``fields.Raw``/``fields.Field`` argument: its default's.

    (So that the default stays valid for it; a string when it has none.)
    """
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, list):
        return "array"
    return "string"


def describe_response_schema(schema: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The response schema as Swagger 2 definitions and OpenAPI 3 schemas."""
    if schema is None:
        return {}, {}
    result = []
    for version, key in (("2.0", "definitions"), ("3.1.0", "components")):
        plugin = MarshmallowPlugin()
        spec = APISpec("model", "1", version, plugins=[plugin])
        spec.components.schema(RESPONSE_SCHEMA_NAME, schema=schema)
        document = spec.to_dict()
        if key == "components":
            result.append(document["components"]["schemas"])
        else:
            result.append(document["definitions"])
    return result[0], result[1]
