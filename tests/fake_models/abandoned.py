"""A model for abandoned requests, hung calls and training floods.

``predict`` sleeps, crashes or answers at once; it accepts an upload and
records nothing, so that tests can see which calls really ran by the
``ran`` directory (one file per call that started).  ``train`` sleeps.
"""

import os
import time
import uuid
from pathlib import Path

from marshmallow import fields


class SlowModel:
    def get_predict_args(self):
        return {
            "how": fields.Str(load_default="ok"),
            "seconds": fields.Float(load_default=0.0),
            "ran": fields.Str(load_default=""),
            "data": fields.Raw(required=False, metadata={"type": "file"}),
        }

    def predict(self, how, seconds, ran, data=None):
        if ran:
            (Path(ran) / uuid.uuid4().hex).write_text(how)
        if how == "exit":
            os._exit(3)
        if how == "sleep":
            time.sleep(seconds)
        return {"pid": os.getpid()}

    def get_train_args(self):
        return {"seconds": fields.Float(load_default=0.0)}

    def train(self, seconds):
        time.sleep(seconds)
        return {"slept": seconds}
