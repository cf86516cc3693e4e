"""Argument fields shared by the MLP models."""

from __future__ import annotations

from marshmallow import fields, validate

from deepaas_bench_models._mlp import INPUTS


def mlp_args() -> dict[str, fields.Field]:
    return {
        "data": fields.List(
            fields.Float(),
            required=True,
            validate=validate.Length(equal=INPUTS),
            metadata={"description": f"{INPUTS} input values (a flattened image)"},
        )
    }
