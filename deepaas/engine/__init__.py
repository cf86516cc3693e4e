"""Running models: executors, worker processes and their wire, batching, GPUs.

The engine runs what :mod:`deepaas.model` loads and wraps; it knows nothing
of HTTP (no aiohttp, no :mod:`deepaas.api` here), so the API, the batch tool
and the trainings use it alike.
"""

from deepaas.engine.build import build_executors, executors_from_settings
from deepaas.engine.devices import DevicePlan
from deepaas.engine.executor import Executor
from deepaas.engine.in_process import InProcessExecutor
from deepaas.engine.probe import plan_from_settings, probe_models
from deepaas.engine.process_pool.pool import ProcessPool
from deepaas.engine.settings import EngineSettings

__all__ = [
    "DevicePlan",
    "EngineSettings",
    "Executor",
    "InProcessExecutor",
    "ProcessPool",
    "build_executors",
    "executors_from_settings",
    "plan_from_settings",
    "probe_models",
]
