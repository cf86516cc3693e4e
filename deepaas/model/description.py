"""A JSON-able description of a served model, made where the model lives.

Worker processes import the model; the HTTP process does not (so that it
stays small).  A worker therefore describes its model once: metadata,
argument documentation for both OpenAPI versions, the media types it can
answer with, and its response schema.  The API layer builds its routes and
API descriptions from this alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from deepaas.model.arguments import field_location, is_file_field

RESPONSE_SCHEMA_NAME = "ModelPredictionResponse"


@dataclasses.dataclass
class MethodDescription:
    """How one model method (predict or train) is called."""

    available: bool
    #: Swagger 2 parameter objects, one per argument.
    parameters_v2: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: OpenAPI 3 parameters (query/header arguments).
    parameters_v3: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: OpenAPI 3 JSON schema of the request body (form and file arguments).
    body_schema_v3: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Names of the file arguments.
    file_arguments: list[str] = dataclasses.field(default_factory=list)
    #: Names of all arguments, in declaration order.
    arguments: list[str] = dataclasses.field(default_factory=list)


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
    """Document the arguments of one method for both OpenAPI versions."""
    desc = MethodDescription(available=available)
    if not arg_fields:
        return desc
    conv2 = _converter("2.0")
    conv3 = _converter("3.1.0")
    body_properties: dict[str, Any] = {}
    body_required: list[str] = []
    for name, field in arg_fields.items():
        location = field_location(field)
        desc.arguments.append(name)
        param2 = conv2._field2parameter(field, name=name, location=location)
        if is_file_field(field):
            desc.file_arguments.append(name)
            param2["type"] = "file"
        if param2.get("default", 0) is None:
            del param2["default"]
        if "type" not in param2:
            _untyped_parameter(param2)
        desc.parameters_v2.append(param2)
        if location == "formData":
            prop = conv3.field2property(field)
            if is_file_field(field):
                prop["type"] = "string"
                prop["format"] = "binary"
            body_properties[name] = prop
            if field.required:
                body_required.append(name)
        else:
            param3 = conv3._field2parameter(field, name=name, location=location)
            desc.parameters_v3.append(param3)
    if body_properties:
        desc.body_schema_v3 = {"type": "object", "properties": body_properties}
        if body_required:
            desc.body_schema_v3["required"] = body_required
    return desc


def _untyped_parameter(param: dict[str, Any]) -> None:
    """Give a ``fields.Raw``/``fields.Field`` argument the type Swagger 2 needs.

    The type follows the default, so that the default stays valid for it.
    """
    default = param.get("default")
    if isinstance(default, bool):
        param["type"] = "boolean"
    elif isinstance(default, int):
        param["type"] = "integer"
    elif isinstance(default, float):
        param["type"] = "number"
    elif isinstance(default, list):
        param["type"] = "array"
        param["items"] = {"type": "string"}
    else:
        param["type"] = "string"
        if "default" in param and not isinstance(default, str):
            param["default"] = json.dumps(default)


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
