"""A model's arguments in both API descriptions, rendered from their specs.

The model layer describes each argument once
(:class:`~deepaas.model.description.ArgumentSpec`); here it becomes a
Swagger 2 parameter (``in``: ``query``, ``formData`` or ``header``; files
typed ``file``), or, for OpenAPI 3.1, a parameter (query and header
arguments) or a property of the request body (form arguments and files).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from deepaas.model.description import ArgumentSpec

__all__ = ["openapi3_body", "openapi3_parameters", "swagger2_parameters"]

_SWAGGER2_IN = {"query": "query", "form": "formData", "header": "header"}


def swagger2_parameters(args: list[ArgumentSpec]) -> list[dict[str, Any]]:
    """Swagger 2 parameter objects, one per argument."""
    return [_swagger2_parameter(arg) for arg in args]


def _swagger2_parameter(arg: ArgumentSpec) -> dict[str, Any]:
    param: dict[str, Any] = {"in": _SWAGGER2_IN[arg.location], "name": arg.name}
    param.update(copy.deepcopy(arg.schema_v2))
    param["required"] = arg.required
    if arg.is_list:
        param["collectionFormat"] = "multi"
    if arg.is_file:
        param["type"] = "file"
    if param.get("default", 0) is None:
        del param["default"]
    if "type" not in param:  # fields.Raw: the type of its default
        param["type"] = arg.type
        if arg.type == "array":
            param["items"] = {"type": "string"}
        elif arg.type == "string" and "default" in param:
            if not isinstance(param["default"], str):
                param["default"] = json.dumps(param["default"])
    return param


def openapi3_parameters(args: list[ArgumentSpec]) -> list[dict[str, Any]]:
    """OpenAPI 3 parameter objects of the query and header arguments."""
    params = []
    for arg in args:
        if arg.location == "form":
            continue
        schema = copy.deepcopy(arg.schema_v3)
        param: dict[str, Any] = {"in": arg.location, "name": arg.name}
        if "description" in schema:
            param["description"] = schema.pop("description")
        if "deprecated" in schema:
            param["deprecated"] = schema.pop("deprecated")
        param["schema"] = schema
        param["required"] = arg.required
        if arg.is_list:
            param["explode"] = True
            param["style"] = "form"
        params.append(param)
    return params


def openapi3_body(args: list[ArgumentSpec]) -> dict[str, Any]:
    """The OpenAPI 3 JSON schema of the form arguments (``{}``: none)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg in args:
        if arg.location != "form":
            continue
        prop = copy.deepcopy(arg.schema_v3)
        if arg.is_file:
            prop["type"] = "string"
            prop["format"] = "binary"
        properties[arg.name] = prop
        if arg.required:
            required.append(arg.name)
    if not properties:
        return {}
    body: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        body["required"] = required
    return body
