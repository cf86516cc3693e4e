"""The small models 2.6.0's ``test_v2_models.py`` builds inline, as plugins.

2.6.0's suite wraps these objects directly; here each is an installed entry
point (see ``conftest.py``) served by a real ``deepaas-run``, so the tests
observe what a client sees: the status and body of each answer.
"""

from __future__ import annotations

from typing import Any

import marshmallow
from marshmallow import fields


class _FooSchema(marshmallow.Schema):
    foo = fields.Str()


class _AnswersFoo:
    """``predict`` answers ``{"foo": "bar"}``, or ``{"foo": 1.0}`` on request."""

    def get_predict_args(self) -> dict[str, fields.Field]:
        return {"as_float": fields.Bool(load_default=False)}

    def predict(self, as_float: bool) -> dict[str, Any]:
        return {"foo": 1.0 if as_float else "bar"}


class SchemaClass(_AnswersFoo):
    """Response schema given as a marshmallow ``Schema`` subclass."""

    schema = _FooSchema


class SchemaDict(_AnswersFoo):
    """Response schema given as a dict of fields."""

    schema = {"foo": fields.Str()}


class SchemaList(_AnswersFoo):
    """An invalid response schema: a list (2.6.0's ``test_bad_schema``)."""

    schema: Any = []


class SchemaObject(_AnswersFoo):
    """An invalid response schema: a plain object (``test_invalid_schema``)."""

    schema: Any = object()


#: A model that implements nothing: 2.6.0's suite wraps a bare ``object()``.
nothing = object()
