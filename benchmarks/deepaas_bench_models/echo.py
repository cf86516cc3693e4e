"""Trivial echo: the framework's own overhead, nothing else."""

from marshmallow import fields


def get_metadata():
    return {"name": "bench_echo", "description": "Answers its message."}


def get_predict_args():
    return {"message": fields.Str(required=True, metadata={"description": "text"})}


def predict(**kwargs):
    return kwargs["message"]


def get_train_args():
    # DEEPaaS 2.6.0's deepaas-cli reads it from every model, even to predict.
    return {}
