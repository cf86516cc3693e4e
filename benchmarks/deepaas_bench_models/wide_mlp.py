"""Wide MLP 784-4096-4096-10: 80 MB of weights read on every call."""

from deepaas_bench_models._fields import mlp_args
from deepaas_bench_models._mlp import MLP

NET = MLP(4096)


def get_metadata():
    return {"name": "bench_wide_mlp", "description": "MLP 784-4096-4096-10."}


def warm():
    NET.warm()


def get_predict_args():
    return mlp_args()


def predict(**kwargs):
    return NET.predict(kwargs["data"])
