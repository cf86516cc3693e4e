"""The echo model, declared cheap and non-blocking: deepaas calls it on the loop.

``deepaas_execution = "async"`` is deepaas's opt-in for models whose calls
take microseconds; DEEPaaS 2.6.0 ignores the attribute.
"""

from deepaas_bench_models.echo import get_metadata, get_predict_args, predict

deepaas_execution = "async"

__all__ = ["get_metadata", "get_predict_args", "predict"]
