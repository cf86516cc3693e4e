"""Trivial echo: the framework's own overhead, nothing else."""

from marshmallow import fields


def get_metadata():
    return {"name": "bench_echo", "description": "Answers its message."}


def get_predict_args():
    return {"message": fields.Str(required=True, metadata={"description": "text"})}


def predict(**kwargs):
    return kwargs["message"]
