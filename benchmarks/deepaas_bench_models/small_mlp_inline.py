"""The small MLP declared cheap and non-blocking: deepaas calls it on the loop."""

from deepaas_bench_models.small_mlp import get_metadata, get_predict_args, predict, warm

deepaas_execution = "async"

__all__ = ["get_metadata", "get_predict_args", "predict", "warm"]
