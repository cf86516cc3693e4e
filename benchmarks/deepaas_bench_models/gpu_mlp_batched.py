"""The GPU MLP with ``predict_batch``: deepaas groups concurrent calls.

On a GPU one forward pass of 32 rows costs about what one row costs, so
batching is where a GPU model's throughput comes from; the GPU check
measures it against ``gpu_mlp``.
"""

from deepaas_bench_models._fields import mlp_args
from deepaas_bench_models._mlp import MLP

resources = {"gpus": 1, "gpu": "preferred"}

NET = MLP(4096, on_device=True)

max_batch_size = 32
batch_timeout = 0.005


def get_metadata():
    return {
        "name": "bench_gpu_mlp_batched",
        "description": "MLP 784-4096-4096-10 on a GPU, batched.",
    }


def warm():
    NET.warm()


def get_predict_args():
    return mlp_args()


def predict(**kwargs):
    return NET.predict(kwargs["data"])


def predict_batch(requests):
    return NET.predict_many([kwargs["data"] for kwargs in requests])
