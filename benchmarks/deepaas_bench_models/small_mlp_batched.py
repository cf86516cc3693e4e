"""The small MLP with a batch entry point: deepaas groups concurrent calls.

Small enough that serving, not the network, bounds a server's rate: the
case where batching pays most (compare ``wide_mlp_batched``, where the
network's arithmetic bounds every server alike).
"""

from deepaas_bench_models._fields import mlp_args
from deepaas_bench_models._mlp import MLP

NET = MLP(512)

max_batch_size = 32
batch_timeout = 0.005


def get_metadata():
    return {"name": "bench_small_mlp_batched", "description": "Batched small MLP."}


def warm():
    NET.warm()


def get_predict_args():
    return mlp_args()


def predict(**kwargs):
    return NET.predict(kwargs["data"])


def predict_batch(requests):
    return NET.predict_many([kwargs["data"] for kwargs in requests])
