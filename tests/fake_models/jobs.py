"""A model whose predictions take a while: what prediction jobs are for."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from marshmallow import fields, validate

PNG = b"\x89PNG\r\n\x1a\n fake image"


class SlowPredictor:
    """Sleeps ``seconds``, then answers JSON or an image (chosen by Accept).

    ``record`` names a directory where each call leaves ``<pid>.start`` when
    it starts and ``<pid>.upload`` with the path of the file it was given,
    so that a test can tell a call has started and where its input lay.
    """

    def get_metadata(self):
        return {"name": "slow", "description": "predicts by sleeping"}

    def get_predict_args(self):
        return {
            "seconds": fields.Float(load_default=0.0),
            "fail": fields.Bool(load_default=False),
            "record": fields.Str(load_default=""),
            "data": fields.Raw(required=False, metadata={"type": "file"}),
            "accept": fields.Str(
                load_default="application/json",
                validate=validate.OneOf(["application/json", "image/png"]),
            ),
        }

    def predict(self, seconds, fail, record, accept, data=None):
        if record:
            marks = Path(record)
            (marks / f"{os.getpid()}.start").write_text(repr(time.time()))
            if data is not None:
                (marks / f"{os.getpid()}.upload").write_text(data.filename)
        time.sleep(seconds)
        if fail:
            raise RuntimeError("asked to fail")
        content = b"" if data is None else Path(data.filename).read_bytes()
        if accept == "image/png":
            return PNG + content
        return {
            "seconds": seconds,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
