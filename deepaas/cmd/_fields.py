"""deepaas-cli's options made from a model's marshmallow fields.

One option per field, with the field's description, choices and default in
``--help``; the values stay strings (or lists of strings) for the field to
convert and check, as the API does (choices are listed, not enforced by
argparse: see deepaas-cli's ``--strict``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from marshmallow import fields, missing, validate

from deepaas.model.arguments import is_file_field

__all__ = ["add_field_options"]


def _choices(field: fields.Field) -> list[Any] | None:
    for validator in getattr(field, "validators", []):
        if isinstance(validator, validate.OneOf):
            return list(validator.choices)
    enum = field.metadata.get("enum")
    return list(enum) if isinstance(enum, (list, tuple)) else None


def _kind(field: fields.Field) -> str:
    if is_file_field(field):
        return "file"
    if isinstance(field, fields.List):
        return "list"
    if isinstance(field, (fields.Dict, fields.Nested)):
        return "dict"
    if isinstance(field, fields.Boolean):
        return "bool"
    return "scalar"


_METAVARS = {
    fields.Integer: "INT",
    fields.Float: "FLOAT",
    fields.Number: "NUMBER",
    fields.DateTime: "DATETIME",
}


def _metavar(field: fields.Field, kind: str) -> str:
    if kind == "file":
        return "PATH"
    if kind == "list":
        return "LIST"
    if kind == "dict":
        return "DICT"
    if kind == "bool":
        return "{true,false}"
    for cls, name in _METAVARS.items():
        if isinstance(field, cls):
            return name
    return "TEXT"


def _help(field: fields.Field, kind: str) -> str:
    meta = field.metadata
    parts = [str(meta.get("description") or "")]
    choices = _choices(field)
    if choices:
        parts.append(f"one of: {', '.join(map(str, choices))}")
    if kind == "list":
        parts.append("a JSON/Python list, or repeat the option")
    elif kind == "dict":
        parts.append("a JSON/Python dict")
    elif kind == "file":
        parts.append("path of a local file")
    if field.required:
        parts.append("required")
    else:
        default = field.load_default
        if default is not None and default is not missing and not callable(default):
            try:
                parts.append(f"default: {json.dumps(default)}")
            except (TypeError, ValueError):
                parts.append(f"default: {default!r}")
    text = "; ".join(p for p in parts if p)
    return text.replace("%", "%%")


def add_field_options(
    parser: argparse.ArgumentParser, arg_fields: Mapping[str, fields.Field]
) -> dict[str, str]:
    """One option per field; returns each argument's kind."""
    kinds: dict[str, str] = {}
    for name, field in arg_fields.items():
        kind = _kind(field)
        kinds[name] = kind
        option: dict[str, Any] = {
            "dest": f"field:{name}",
            "metavar": _metavar(field, kind),
            "help": _help(field, kind),
            "default": None,
        }
        if kind == "list":
            option["action"] = "append"
        elif kind == "bool":
            option.update(nargs="?", const="true")
        else:
            choices = _choices(field)
            if choices and all(isinstance(c, str) for c in choices):
                # Shown, not enforced here: the field's own validator checks
                # the value (or lets it through with a warning, as 2.x did).
                option["metavar"] = "{" + ",".join(choices) + "}"
        if field.required:
            option["required"] = True
        parser.add_argument(f"--{name}", **option)
        if kind == "bool" and not field.required:
            # --no-warm is how the other deepaas tools spell false.
            parser.add_argument(
                f"--no-{name}",
                dest=f"field:{name}",
                action="store_const",
                const="false",
                help=f"same as --{name} false",
            )
    return kinds
