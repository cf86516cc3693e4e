"""File upload: the model reads the uploaded file and answers its size."""

from marshmallow import fields


def get_metadata():
    return {"name": "bench_upload", "description": "Answers the upload's size."}


def get_predict_args():
    return {
        "file": fields.Field(
            required=True,
            metadata={"type": "file", "location": "form", "description": "any file"},
        )
    }


def predict(**kwargs):
    with open(kwargs["file"].filename, "rb") as handle:
        return {"size": len(handle.read())}
