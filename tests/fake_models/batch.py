"""Models for the batch tests: what each input holds decides what happens.

``Reader`` reads its input file: ``fail ...`` raises, ``crash`` kills the
worker process, ``sleep S`` sleeps S seconds; anything else is answered
(JSON, or text/plain through ``accept``).
"""

import os
import time

from marshmallow import fields, validate


class Reader:
    def get_metadata(self):
        return {"name": "batch-reader", "description": "reads text inputs"}

    def get_predict_args(self):
        return {
            "data": fields.Raw(
                required=True,
                metadata={
                    "type": "file",
                    "location": "form",
                    "description": "a text file",
                },
            ),
            "scale": fields.Int(
                load_default=1,
                validate=validate.Range(min=1),
                metadata={"description": "multiplies the length"},
            ),
            "tags": fields.List(fields.Str(), load_default=[]),
            "accept": fields.Str(
                load_default="application/json",
                validate=validate.OneOf(["application/json", "text/plain"]),
            ),
        }

    def predict(self, data, scale, tags, accept):
        with open(data.filename, encoding="utf-8") as handle:
            text = handle.read()
        if text.startswith("fail"):
            raise ValueError(f"cannot read {data.original_filename}")
        if text.startswith("crash"):
            os._exit(7)
        if text.startswith("sleep"):
            time.sleep(float(text.split()[1]))
        if accept == "text/plain":
            return f"{data.original_filename}:{len(text) * scale}\n"
        return {
            "name": data.original_filename,
            "length": len(text) * scale,
            "tags": tags,
            "pid": os.getpid(),
            "path": data.filename,
        }


class TwoFiles:
    def get_predict_args(self):
        return {
            "left": fields.Raw(required=True, metadata={"type": "file"}),
            "right": fields.Raw(required=False, metadata={"type": "file"}),
        }

    def predict(self, left, right=None):
        return {
            "left": left.original_filename,
            "right": right.original_filename if right else None,
        }


class GpuReader(Reader):
    resources = {"gpus": 1}


class Divide:
    """No file argument: for --input-jsonl."""

    def get_predict_args(self):
        return {
            "a": fields.Float(required=True),
            "b": fields.Float(load_default=1.0),
            "digits": fields.Int(load_default=3),
        }

    def predict(self, a, b, digits):
        return round(a / b, digits)
