"""The wide MLP on the worker's GPU, one request per call (the GPU check).

It declares one GPU per worker, preferred: on a machine without one (the
check's rehearsal on the CPU) it runs on the CPU instead of refusing to start.
"""

from deepaas_bench_models._fields import mlp_args
from deepaas_bench_models._mlp import MLP

resources = {"gpus": 1, "gpu": "preferred"}

NET = MLP(4096, on_device=True)


def get_metadata():
    return {"name": "bench_gpu_mlp", "description": "MLP 784-4096-4096-10 on a GPU."}


def warm():
    NET.warm()


def get_predict_args():
    return mlp_args()


def predict(**kwargs):
    return NET.predict(kwargs["data"])
