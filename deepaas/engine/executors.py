"""Choosing and building the executor of each served model."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from deepaas.engine.devices import DevicePlan
from deepaas.engine.execution import (
    DEFAULT_STALL_TIMEOUT,
    Executor,
    InProcessExecutor,
)
from deepaas.engine.workers import ProcessPool
from deepaas.model.loading import ModelSpec


def build_executors(
    specs: Sequence[ModelSpec],
    *,
    workers: int = 1,
    warm: bool = True,
    max_queue: int = 0,
    predict_timeout: float = 0,
    worker_envs: Mapping[str, list[dict[str, str]]] | None = None,
    modes: Mapping[str, str] | None = None,
    log_level: int = logging.INFO,
    ready_stall_timeout: float = DEFAULT_STALL_TIMEOUT,
) -> dict[str, Executor]:
    """One executor per model: in the API process or in worker processes.

    A model runs in-process when ``workers == 0`` or when its mode (from
    ``modes``, or the ``DevicePlan`` given as ``worker_envs``) is
    ``"thread"`` or ``"async"``; otherwise in a :class:`ProcessPool`.
    ``worker_envs`` gives, per model, each worker's extra environment (the
    device plan: ``CUDA_VISIBLE_DEVICES``); its length overrides ``workers``.
    ``ready_stall_timeout``: seconds with every worker busy and none taking
    a call after which ``/ready`` says the model is stalled (0: never).
    """
    if workers < 0:
        raise ValueError(f"--workers must be >= 0 (got {workers})")
    if predict_timeout < 0:
        raise ValueError(f"--predict-timeout must be >= 0 (got {predict_timeout})")
    if modes is None and isinstance(worker_envs, DevicePlan):
        modes = worker_envs.modes
    executors: dict[str, Executor] = {}
    for spec in specs:
        envs = (worker_envs or {}).get(spec.name)
        mode = (modes or {}).get(spec.name, "process")
        if workers == 0 or mode in ("thread", "async"):
            executors[spec.name] = InProcessExecutor(
                spec,
                warm=warm,
                max_queue=max_queue,
                call_timeout=predict_timeout,
                mode=None if workers == 0 and mode == "process" else mode,
                stall_timeout=ready_stall_timeout,
            )
        else:
            size = len(envs) if envs else workers
            executors[spec.name] = ProcessPool(
                spec,
                size=size,
                warm=warm,
                worker_envs=envs,
                max_queue=max_queue,
                call_timeout=predict_timeout,
                log_level=log_level,
                stall_timeout=ready_stall_timeout,
            )
    return executors
