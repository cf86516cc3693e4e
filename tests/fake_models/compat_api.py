"""Models written as published DEEPaaS 2.x models are, for the HTTP compat tests."""

import urllib.error

from aiohttp import web
from webargs import fields, validate


class HeaderTrainer:
    """Declares ``accept`` with ``location="headers"`` in get_train_args (2.x idiom)."""

    def get_metadata(self):
        return {"name": "header-trainer", "description": "no id in the metadata"}

    def get_predict_args(self):
        return {"x-request-tag": fields.Str(required=True, location="headers")}

    def predict(self, **kwargs):
        return {"tag": kwargs["x-request-tag"]}

    def get_train_args(self):
        return {
            "accept": fields.Str(
                required=True,
                location="headers",
                description="Media type of the training's output.",
                validate=validate.OneOf(["application/json", "text/plain"]),
            ),
            "epochs": fields.Int(missing=1),
        }

    def train(self, **kwargs):
        return kwargs


class ImageRange:
    """Offers ``image/*`` (any image) and JSON through its ``accept`` argument."""

    def get_predict_args(self):
        return {
            "accept": fields.Str(
                missing="application/json",
                location="headers",
                validate=validate.OneOf(["application/json", "image/*"]),
            ),
        }

    def predict(self, accept):
        if accept == "image/*":
            return b"\x89PNG fake"
        return {"accept": accept}


class Refuser:
    """Refuses its input with aiohttp's HTTP errors, as ``_catch_error`` models do."""

    def get_predict_args(self):
        return {"status": fields.Int(missing=400)}

    def predict(self, status):
        if status == 400:
            raise web.HTTPBadRequest(reason="the image is not RGB")
        if status == 413:
            raise web.HTTPRequestEntityTooLarge(
                max_size=10, actual_size=20, text="at most 10 pixels"
            )
        if status == 503:
            raise web.HTTPServiceUnavailable(reason="the GPU is busy")
        # Another library's HTTP error (a failed download) is the model's failure.
        raise urllib.error.HTTPError("http://x/weights", 404, "Not Found", {}, None)


class Lists:
    """List arguments, as a client sends them in a form or a query string."""

    def get_predict_args(self):
        return {
            "features": fields.List(fields.Float(), required=True),
            "labels": fields.List(fields.Str(), missing=[]),
            "text": fields.Str(missing=""),
        }

    def predict(self, features, labels, text):
        return {"features": features, "labels": labels, "text": text}
