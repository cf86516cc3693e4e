"""A model that behaves like DEEPaaS 2.6.0's built-in test model.

DEEPaaS 2.x serves a placeholder model named ``deepaas-test`` when nothing
else is installed, and its own test suite talks to it. This class offers the
same interface (arguments, response schema, metadata keys, outputs for each
media type), so the ports in ``tests/compat/upstream`` can send the requests
2.6.0's suite sends and compare the answers with what 2.6.0 serves.
It is registered under the entry-point name ``deepaas-test``.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from marshmallow import fields, validate

#: A 2x2 RGB PNG: the model's binary output for ``Accept: image/png``.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02\x00\x00\x00\x02"
    b"\x08\x02\x00\x00\x00\xfd\xd4\x9as\x00\x00\x00\x0fIDATx\x9cc`h\xf8\x0fB"
    b"\x10\n\x00%\xf6\x05\xfd\xa0r\x9f\xcb\x00\x00\x00\x00IEND\xaeB`\x82"
)

#: The same image as a data URL: the ``text/plain`` output and ``data`` key.
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode("ascii")

#: What ``get_metadata`` returns (2.6.0's test model sets ``id`` to "0").
METADATA = {
    "id": "0",
    "name": "deepaas-test",
    "description": (
        "A stand-in model for exercising the API: it ignores its input "
        "and answers a fixed label and a small image."
    ),
    "author": "deepaas developers",
    "version": "0.0.1",
    "url": "https://example.org/deepaas-test",
    "license": "Apache 2.0",
}

#: The JSON prediction: the fields of the response schema, all of them.
PREDICTION = {
    "date": "2019-01-1",
    "labels": [{"label": "foo", "probability": 1.0}],
    "data": PNG_DATA_URL,
}

MEDIA_TYPES = ["application/json", "text/plain", "image/png"]


class UpstreamTestModel:
    """The 2.6.0 test model's behaviour: a file in, a label or an image out."""

    name = "deepaas-test"

    # A dict of fields, as 2.6.0's test model declares it: the server turns
    # it into the ModelPredictionResponse schema and validates answers.
    schema = {
        "date": fields.Date(),
        "labels": fields.List(
            fields.Nested({"label": fields.Str(), "probability": fields.Float()})
        ),
        "data": fields.Str(),
    }

    def warm(self) -> None:
        """Nothing to load."""

    def get_metadata(self) -> dict[str, Any]:
        """Metadata with 2.6.0's keys, ``id`` included."""
        return dict(METADATA)

    def get_predict_args(self) -> dict[str, fields.Field]:
        """A required file and integer, an enum string and ``accept``."""
        return {
            "data": fields.Field(
                required=True,
                metadata={
                    "description": "Input file (ignored).",
                    "location": "form",
                    "type": "file",
                },
            ),
            "parameter": fields.Int(
                required=True, metadata={"description": "A required integer."}
            ),
            "parameter_three": fields.Str(
                metadata={
                    "description": "One of 'foo' or 'bar'.",
                    "enum": ["foo", "bar"],
                },
                validate=validate.OneOf(["foo", "bar"]),
            ),
            "accept": fields.Str(
                metadata={
                    "description": "Media type of the answer.",
                    "location": "headers",
                },
                validate=validate.OneOf(list(MEDIA_TYPES)),
            ),
        }

    def get_train_args(self) -> dict[str, fields.Field]:
        """A required ``sleep`` (seconds the training lasts) and a string."""
        return {
            "sleep": fields.Int(
                required=True, metadata={"description": "Seconds to train."}
            ),
            "parameter_two": fields.Str(metadata={"description": "A string."}),
        }

    def predict(self, **kwargs: Any) -> Any:
        """PNG bytes, a data URL or the JSON prediction, as ``accept`` asks."""
        accept = kwargs.get("accept")
        if accept == "image/png":
            return PNG
        if accept == "text/plain":
            return PNG_DATA_URL
        return dict(PREDICTION)

    def train(self, **kwargs: Any) -> None:
        """Sleep ``sleep`` seconds and return nothing, as 2.6.0's does."""
        time.sleep(kwargs.get("sleep", 1))
