"""Reading argument fields in both idioms: files, locations, choices, parsing."""

import math

import marshmallow
import pytest
from marshmallow import fields, validate
from webargs import fields as wfields

from deepaas.exceptions import ArgumentsInvalid
from deepaas.model.arguments import (
    accept_choices,
    build_schema,
    field_location,
    is_file_field,
    parse_arguments,
)
from deepaas.model.files import UploadedFile
from tests.fake_models import new_style, old_style


@pytest.mark.parametrize("field, expected", [
    (wfields.Field(type="file", location="form"), True),
    (fields.Field(metadata={"type": "file"}), True),
    (fields.Str(metadata={"type": "file"}), True),
    (fields.Raw(location="form"), True),
    (fields.Raw(metadata={"location": "files"}), True),
    (fields.Raw(), False),
    (fields.Str(location="form"), False),
    (fields.Str(), False),
])
def test_file_fields_in_both_idioms(field, expected):
    assert is_file_field(field) is expected


@pytest.mark.parametrize("field, location", [
    (wfields.Field(type="file", location="form"), "formData"),
    (fields.Str(), "query"),
    (fields.Str(location="form"), "formData"),
    (fields.Str(metadata={"location": "json"}), "formData"),
    (fields.Str(location="headers"), "header"),
])
def test_documented_location(field, location):
    assert field_location(field) == location


def test_accept_choices_from_one_of_or_the_default():
    assert accept_choices({"accept": fields.Str(
        validate=validate.OneOf(["text/csv", "application/json"]))}) == [
        "text/csv", "application/json"]
    assert accept_choices({"accept": fields.Str(load_default="image/png")}) == [
        "image/png"]
    assert accept_choices({"other": fields.Str()}) == []


def test_old_idiom_defaults_and_conversion():
    schema = build_schema(old_style.get_predict_args(), "Old")
    upload = UploadedFile("data", "/tmp/x")
    got = parse_arguments(schema, [("data", upload), ("n", "4"),
                                   ("probs", "0.5"), ("probs", "0.7")])
    assert got == {"data": upload, "mode": "fast", "n": 4, "probs": [0.5, 0.7]}


def test_new_idiom_defaults_and_json_precedence():
    schema = build_schema(new_style.Model().get_predict_args(), "New")
    got = parse_arguments(schema, [("text", "query"), ("score", "0.1")],
                          {"text": "json"})
    assert got == {"text": "json", "score": 0.1, "bad": False}


def test_unknown_arguments_are_dropped():
    schema = build_schema({"a": fields.Int()}, "A")
    assert parse_arguments(schema, [("a", "1"), ("b", "2")]) == {"a": 1}


def test_errors_are_flat_and_files_must_be_uploads():
    schema = build_schema(old_style.get_predict_args(), "Old")
    with pytest.raises(ArgumentsInvalid) as info:
        parse_arguments(schema, [("data", "a string"), ("mode", "other")])
    errors = info.value.to_json()
    assert set(errors) == {"data", "mode"}
    assert errors["mode"] == ["Must be one of: fast, slow."]
    assert errors["data"] == ["Not a valid file: send it as a multipart file part."]


def test_list_from_a_json_body():
    schema = build_schema({"xs": fields.List(fields.Float(), load_default=[0.1])},
                          "L")
    assert parse_arguments(schema, [], {"xs": [1, 2]}) == {"xs": [1.0, 2.0]}
    assert parse_arguments(schema, []) == {"xs": [0.1]}


def test_json_number_lists_load_like_marshmallow_with_the_same_errors():
    """The fast path for List(Float()) gives marshmallow's answers and messages."""
    arg_fields = {
        "pixels": fields.List(
            fields.Float(), required=True, validate=validate.Length(equal=4)
        ),
        "counts": fields.List(fields.Integer(), load_default=[1]),
        "n": fields.Int(load_default=2),
    }
    fast = build_schema(arg_fields, "Fast")
    reference = marshmallow.Schema.from_dict(arg_fields)()
    cases = [
        {"pixels": [1, 2.5, 3, 4]},
        {"pixels": [1, 2, 3]},
        {"pixels": [1, 2, "x", 4]},
        {"pixels": [1, 2, 3, math.inf]},
        {"pixels": [True, 2, 3, 4]},
        {"pixels": [1, 2, 3, 4], "counts": [1, 2.5]},
        {"pixels": [1, 2, 3, 4], "counts": [3, 4], "n": "7"},
        {"counts": [1]},
        {"pixels": "1,2,3,4"},
    ]
    for body in cases:
        try:
            expected = reference.load(body)
        except marshmallow.ValidationError as exc:
            with pytest.raises(ArgumentsInvalid) as caught:
                parse_arguments(fast, [], body)
            assert caught.value.errors == exc.messages, body
        else:
            got = parse_arguments(fast, [], body)
            assert got == expected, body
            assert all(type(v) is float for v in got["pixels"])


def test_field_by_field_loading_matches_marshmallow_schema_load():
    """Answers and error messages are those of marshmallow's own Schema.load."""
    arg_fields = {
        "name": fields.Str(required=True, validate=validate.Length(min=2)),
        "mode": fields.Str(load_default="fast",
                           validate=validate.OneOf(["fast", "slow"])),
        "size": fields.Int(data_key="n", load_default=3),
        "ratio": fields.Float(allow_none=True, load_default=None),
        "flag": fields.Bool(load_default=False),
        "when": fields.Date(),
        "tags": fields.List(fields.Str(), load_default=list),
        "box": fields.Nested(
            marshmallow.Schema.from_dict({"w": fields.Int(required=True)}),
        ),
        "seed": fields.Int(attribute="random_seed"),
    }
    ours = build_schema(arg_fields, "Mixed")
    reference = marshmallow.Schema.from_dict(arg_fields)(unknown=marshmallow.EXCLUDE)
    cases = [
        {"name": "ab"},
        {"name": "a"},
        {},
        {"name": "ab", "mode": "medium", "n": "x", "size": 9},
        {"name": "ab", "n": "12", "ratio": None, "flag": "yes", "tags": ["a", 1]},
        {"name": "ab", "ratio": "nan?", "flag": "maybe", "when": "2026-02-30"},
        {"name": "ab", "when": "2026-11-21", "box": {"w": "4"}, "seed": 7},
        {"name": "ab", "box": {}, "seed": "x", "extra": 1},
        {"name": None},
    ]
    for body in cases:
        try:
            expected = reference.load(body)
        except marshmallow.ValidationError as exc:
            with pytest.raises(ArgumentsInvalid) as caught:
                parse_arguments(ours, [], body)
            assert caught.value.errors == exc.messages, body
        else:
            assert parse_arguments(ours, [], body) == expected, body
