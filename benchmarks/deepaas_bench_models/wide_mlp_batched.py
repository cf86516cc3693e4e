"""The wide MLP with a batch entry point: deepaas groups concurrent calls."""

from deepaas_bench_models._fields import mlp_args
from deepaas_bench_models._mlp import MLP

NET = MLP(4096)

max_batch_size = 32
batch_timeout = 0.005


def get_metadata():
    return {"name": "bench_wide_mlp_batched", "description": "Batched wide MLP."}


def warm():
    NET.warm()


def get_predict_args():
    return mlp_args()


def predict(**kwargs):
    return NET.predict(kwargs["data"])


def predict_batch(requests):
    return NET.predict_many([kwargs["data"] for kwargs in requests])
