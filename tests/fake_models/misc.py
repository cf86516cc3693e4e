"""Small models for error paths: objects, failures, media types."""

import os

from marshmallow import fields, validate


class _Echo:
    def get_predict_args(self):
        return {"value": fields.Str(load_default="hi")}

    def predict(self, value):
        return value


echo = _Echo()


def _raise(**kwargs):
    raise RuntimeError("the model exploded")


class Failing:
    """predict raises; metadata raises too (the fallback applies)."""

    def get_metadata(self):
        raise ValueError("no metadata today")

    def get_predict_args(self):
        return {}

    def predict(self, **kwargs):
        raise RuntimeError("the model exploded")


class Images:
    """Answers bytes or an open file, chosen by the Accept header."""

    def get_predict_args(self):
        return {
            "accept": fields.Str(
                load_default="image/png",
                validate=validate.OneOf(
                    ["image/png", "application/json", "text/plain"]
                ),
            ),
            "as_file": fields.Bool(load_default=False),
        }

    def predict(self, accept, as_file):
        if accept == "application/json":
            return {"accept": accept}
        if accept == "text/plain":
            return "plain text"
        if as_file:
            path = os.path.join(os.path.dirname(__file__), "pixel.bin")
            return open(path, "rb")
        return b"\x89PNG fake"


class PredictOnly:
    def predict(self, **kwargs):
        return {"ok": True}
