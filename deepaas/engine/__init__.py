"""Running models: executors, worker processes and their wire, batching, GPUs.

The engine runs what :mod:`deepaas.model` loads and wraps; it knows nothing
of HTTP (no aiohttp, no :mod:`deepaas.api` here), so the API, the batch tool
and the trainings use it alike.
"""

from deepaas.engine.devices import DevicePlan
from deepaas.engine.execution import Executor, InProcessExecutor
from deepaas.engine.executors import build_executors
from deepaas.engine.probe import plan_from_config, probe_models
from deepaas.engine.workers import ProcessPool

__all__ = [
    "DevicePlan",
    "Executor",
    "InProcessExecutor",
    "ProcessPool",
    "build_executors",
    "plan_from_config",
    "probe_models",
]
