"""A module model in the marshmallow 3 / webargs 5 keyword idiom."""

from webargs import fields, validate


def get_metadata():
    return {"id": "old-1", "name": "old-style", "description": "old idiom",
            "author": "Tester", "version": "0.1"}


def get_predict_args():
    return {
        "data": fields.Field(required=True, type="file", location="form",
                             description="image"),
        "mode": fields.Str(required=False, missing="fast", description="mode",
                           enum=["fast", "slow"],
                           validate=validate.OneOf(["fast", "slow"])),
        "n": fields.Int(missing=3, description="count",
                        validate=validate.Range(min=1, max=10)),
        "probs": fields.List(fields.Float(), missing=[0.1]),
    }


def get_train_args():
    return {"epochs": fields.Int(missing=1, description="epochs")}


def predict(**kwargs):
    data = kwargs["data"]
    with open(data.filename, "rb") as handle:
        content = handle.read()
    return {
        "name": data.name,
        "original_filename": data.original_filename,
        "content_type": data.content_type,
        "size": len(content),
        "path": data.filename,
        "mode": kwargs["mode"],
        "n": kwargs["n"],
        "probs": kwargs["probs"],
    }


def train(**kwargs):
    return {"epochs": kwargs["epochs"]}
