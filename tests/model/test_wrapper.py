"""ModelWrapper: one face over module, class and object models."""

import io
import types

import pytest
from marshmallow import Schema, fields

from deepaas.exceptions import (
    ArgumentsInvalid,
    MethodNotImplemented,
    ModelError,
    ModelLoadError,
    ResponseInvalid,
)
from deepaas.model import ModelWrapper, RawArguments, UploadedFile
from tests.fake_models import extra, misc, new_style, old_style


def model(**attributes):
    """A module-like model made of the given functions and values."""
    return types.SimpleNamespace(**attributes)


def test_module_model_description():
    desc = ModelWrapper("old-style", old_style).describe()
    assert desc.name == "old-style"
    assert desc.metadata["id"] == "old-1"
    assert desc.predict.available and desc.train.available
    assert desc.predict.arguments == ["data", "mode", "n", "probs"]
    assert desc.predict.file_arguments == ["data"]
    assert not desc.has_response_schema


def test_class_model_description_has_the_response_schema():
    desc = ModelWrapper("new-style", new_style.Model()).describe()
    assert desc.has_response_schema
    assert "ModelPredictionResponse" in desc.response_definitions_v2
    assert not desc.train.available


def test_metadata_fallbacks():
    fallback_keys = {"id", "name", "description"}
    for subject in (misc.Failing(), misc.PredictOnly(),
                    model(get_metadata=lambda: ["not", "a", "dict"]),
                    model(get_metadata=lambda: {"blob": object()})):
        meta = ModelWrapper("m", subject).metadata()
        assert set(meta) == fallback_keys
        assert (meta["id"], meta["name"]) == ("0", "m")


def test_metadata_keeps_every_key_and_fills_id_and_name():
    meta = ModelWrapper("m", model(get_metadata=lambda: {
        "author": "A", "author-email": "a@b", "license": "MIT", "links": []
    })).metadata()
    assert meta == {"id": "m", "name": "m", "description": "", "author": "A",
                    "author-email": "a@b", "license": "MIT", "links": []}


def test_warm_is_called_and_its_failure_is_a_model_error():
    instance = new_style.Model()
    ModelWrapper("n", instance).warm()
    assert instance.warmed == 1

    def bad_warm():
        raise FileNotFoundError("weights")

    with pytest.raises(ModelError) as info:
        ModelWrapper("m", model(warm=bad_warm, predict=lambda: 1)).warm()
    assert "FileNotFoundError: weights" in info.value.message


def test_missing_methods():
    wrapper = ModelWrapper("m", extra.NoPredict())
    with pytest.raises(MethodNotImplemented):
        wrapper.run_predict(RawArguments())
    with pytest.raises(MethodNotImplemented):
        wrapper.parse_train_args(RawArguments())
    wrapper.warm()  # no warm(): nothing to do


def test_predict_from_pairs_and_json():
    wrapper = ModelWrapper("n", new_style.Model())
    out = wrapper.run_predict(RawArguments(pairs=[("text", "a")],
                                           json_body={"score": 0.25}))
    assert out.content_type == "application/json"
    assert out.body == b'{"label": "A", "score": 0.25}'


def test_predict_without_schema_wraps_and_encodes_numpy():
    import numpy as np

    wrapper = ModelWrapper("m", model(predict=lambda: {"x": np.float32(1.5),
                                                       "y": np.arange(3)}))
    assert wrapper.run_predict(RawArguments()).body == (
        b'{"status": "OK", "predictions": {"x": 1.5, "y": [0, 1, 2]}}')


def test_predict_returning_something_not_json_is_response_invalid():
    wrapper = ModelWrapper("m", model(predict=lambda: object()))
    with pytest.raises(ResponseInvalid) as info:
        wrapper.run_predict(RawArguments())
    assert "not JSON" in info.value.message


def test_off_schema_answer_names_the_field():
    wrapper = ModelWrapper("n", new_style.Model())
    with pytest.raises(ResponseInvalid) as info:
        wrapper.run_predict(RawArguments(pairs=[("text", "a"), ("bad", "1")]))
    assert "score" in info.value.message


def test_model_exception_becomes_model_error_with_traceback():
    with pytest.raises(ModelError) as info:
        ModelWrapper("f", misc.Failing()).run_predict(RawArguments())
    assert info.value.message == "RuntimeError: the model exploded"
    assert "Traceback" in info.value.traceback


def test_bytes_and_files_keep_the_chosen_media_type():
    wrapper = ModelWrapper("i", misc.Images())
    png = wrapper.run_predict(RawArguments(), "image/png")
    assert (png.body, png.content_type) == (b"\x89PNG fake", "image/png")
    as_file = wrapper.run_predict(RawArguments(pairs=[("as_file", "true")]),
                                  "image/png")
    assert as_file.content_type == "image/png"
    assert as_file.body.startswith(b"\x89PNG")
    text = wrapper.run_predict(RawArguments(), "text/plain")
    assert (text.body, text.content_type) == (b"plain text", "text/plain")


def test_open_file_is_closed_after_reading():
    handle = io.BytesIO(b"data")
    wrapper = ModelWrapper("m", model(predict=lambda: handle))
    out = wrapper.run_predict(RawArguments())
    assert out.body == b"data"
    assert out.content_type == "application/octet-stream"
    assert handle.closed


def test_bad_argument_getters_fail_loading():
    with pytest.raises(ModelLoadError, match="get_predict_args"):
        ModelWrapper("m", model(get_predict_args=lambda: ["x"], predict=print))
    with pytest.raises(ModelLoadError, match="'x' is not a marshmallow field"):
        ModelWrapper("m", model(get_predict_args=lambda: {"x": 1}, predict=print))

    def boom():
        raise KeyError("config")

    with pytest.raises(ModelLoadError, match="KeyError"):
        ModelWrapper("m", model(get_train_args=boom, predict=print))
    with pytest.raises(ModelLoadError, match="schema"):
        ModelWrapper("m", model(schema=42, predict=print))


def test_argument_getters_may_return_a_schema():
    class Args(Schema):
        x = fields.Int(load_default=1)

    for getter in (Args, Args()):
        wrapper = ModelWrapper("m", model(get_predict_args=lambda g=getter: g,
                                          predict=lambda x: x))
        assert wrapper.run_predict(RawArguments(pairs=[("x", "5")])).body == (
            b'{"status": "OK", "predictions": 5}')


def test_invalid_arguments_are_flat():
    wrapper = ModelWrapper("o", old_style)
    with pytest.raises(ArgumentsInvalid) as info:
        wrapper.run_predict(RawArguments(pairs=[("n", "0")]))
    assert info.value.to_json() == {
        "data": ["Missing data for required field."],
        "n": ["Must be greater than or equal to 1 and less than or equal to 10."],
    }


def test_file_argument_object(tmp_path):
    path = tmp_path / "upload"
    path.write_bytes(b"12345")
    upload = UploadedFile(name="data", filename=str(path), content_type="text/csv",
                          original_filename="samples.csv")
    out = ModelWrapper("o", old_style).run_predict(
        RawArguments(pairs=[("data", upload)]))
    import json

    got = json.loads(out.body)["predictions"]
    assert got["size"] == 5
    assert got["original_filename"] == "samples.csv"
    assert got["content_type"] == "text/csv"
    assert upload.to_json() == ["data", "text/csv", "samples.csv"]
    upload.remove()
    upload.remove()  # a second removal is harmless
    assert not path.exists()


def test_describing_a_model_asks_its_metadata_once():
    calls = []

    def get_metadata():
        calls.append(1)
        return {"name": "counted", "resources": {"gpus": 1, "gpu": "preferred"}}

    desc = ModelWrapper("counted", model(get_metadata=get_metadata)).describe()
    assert desc.resources == {"gpus": 1, "gpu": "preferred"}
    assert desc.metadata["name"] == "counted"
    assert len(calls) == 1
