"""A predict/train that cannot take its declared arguments is refused at load."""

from __future__ import annotations

import functools
import types
from typing import Any

import pytest
from marshmallow import fields

from deepaas.exceptions import ModelLoadError
from deepaas.model import ModelWrapper


def model(**attributes: Any) -> types.SimpleNamespace:
    """A module-like model made of the given functions and values."""
    return types.SimpleNamespace(**attributes)


def refusal(subject: Any) -> str:
    with pytest.raises(ModelLoadError) as info:
        ModelWrapper("m", subject)
    message = info.value.message
    assert "\n" not in message
    return message


def test_a_declared_argument_the_signature_lacks_is_named() -> None:
    message = refusal(model(
        get_predict_args=lambda: {"image": fields.Str()},
        predict=lambda img: img,
    ))
    assert message.startswith("model 'm': predict() cannot take the argument 'image'")
    assert "get_predict_args()" in message


def test_the_keyword_follows_attribute_and_data_key_is_only_the_wire_name() -> None:
    message = refusal(model(
        get_train_args=lambda: {"epochs": fields.Int(attribute="n_epochs")},
        train=lambda epochs=1: epochs,
    ))
    assert "train() cannot take the argument 'n_epochs'" in message
    assert "attribute='n_epochs'" in message
    # data_key renames what the client sends; the model still gets "epochs".
    ModelWrapper("m", model(
        get_train_args=lambda: {"epochs": fields.Int(data_key="num-epochs")},
        train=lambda epochs=1: epochs,
    ))
    message = refusal(model(
        get_train_args=lambda: {"epochs": fields.Int(data_key="num-epochs")},
        train=lambda num_epochs=1: num_epochs,
    ))
    assert "'epochs' (sent as 'num-epochs')" in message


def test_a_required_parameter_nobody_declares_is_named() -> None:
    message = refusal(model(
        get_predict_args=lambda: {"data": fields.Str()},
        predict=lambda data, threshold: data,
    ))
    assert "predict() requires the argument 'threshold'" in message
    message = refusal(model(train=lambda epochs: epochs))  # no get_train_args
    assert "train() requires the argument 'epochs'" in message


def test_positional_only_parameters_cannot_be_passed() -> None:
    namespace: dict[str, Any] = {}
    exec("def predict(data, /, **kwargs): return data", namespace)
    message = refusal(model(get_predict_args=lambda: {"data": fields.Str()},
                            predict=namespace["predict"]))
    assert "positional-only argument 'data'" in message


def test_signatures_that_take_their_arguments_load() -> None:
    declared = {"a": fields.Str(required=True), "b": fields.Int(load_default=1)}

    def keywords(*, a: str, b: int = 2, c: int = 3) -> str:
        return a

    def decorator(func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)
        return wrapper

    class Bound:
        def get_predict_args(self) -> dict[str, Any]:
            return declared

        def predict(self, a: str, b: int) -> str:
            return a

    for subject in (
        model(get_predict_args=lambda: declared, predict=lambda **kwargs: kwargs),
        model(get_predict_args=lambda: declared, predict=lambda a, **rest: a),
        model(get_predict_args=lambda: declared, predict=keywords),
        # a decorator may add or consume arguments: its wrapper is what runs
        model(get_predict_args=lambda: declared,
              predict=decorator(lambda other: other)),
        Bound(),
        model(get_predict_args=lambda: declared, predict=max),  # tells nothing
    ):
        ModelWrapper("m", subject)
