"""A model written as published serverless models are.

Its weights are loaded in ``warm()``, and ``predict`` cannot answer before;
its ``timestamp`` is validated by a choice that published command lines do
not always respect; it answers JSON or, for ``accept=image/png``, a file
object, as models that draw their result do.
"""

import io

from webargs import fields, validate

TIMESTAMPS = ["2023-01-01", "2023-06-01"]


class Published:
    def __init__(self):
        self.weights = None

    def get_metadata(self):
        return {"name": "serverless", "description": "loads weights in warm()"}

    def warm(self):
        self.weights = {"scale": 2}

    def get_predict_args(self):
        return {
            "image": fields.Field(
                required=False, type="file", location="form", description="an image"
            ),
            "timestamp": fields.Str(
                missing=TIMESTAMPS[0],
                description="date",
                validate=validate.OneOf(TIMESTAMPS),
            ),
            "n": fields.Int(missing=1, validate=validate.Range(min=1, max=3)),
            "accept": fields.Str(
                missing="application/json",
                validate=validate.OneOf(["application/json", "image/png"]),
            ),
        }

    def predict(self, image=None, timestamp=None, n=1, accept=None):
        if self.weights is None:
            raise RuntimeError("weights not loaded: warm() was not called")
        size = None
        if image is not None:
            with open(image.filename, "rb") as handle:
                size = len(handle.read())
        if accept == "image/png":
            return io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"x" * n * self.weights["scale"])
        return {"timestamp": timestamp, "n": n * self.weights["scale"], "size": size}
