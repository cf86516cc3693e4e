"""Small MLP 784-512-512-10: compute is tiny, framework overhead dominates."""

from deepaas_bench_models._fields import mlp_args
from deepaas_bench_models._mlp import MLP

NET = MLP(512)


def get_metadata():
    return {"name": "bench_small_mlp", "description": "MLP 784-512-512-10."}


def warm():
    NET.warm()


def get_predict_args():
    return mlp_args()


def predict(**kwargs):
    return NET.predict(kwargs["data"])


def get_train_args():
    # DEEPaaS 2.6.0's deepaas-cli reads it from every model, even to predict.
    return {}
