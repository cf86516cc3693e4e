"""Choosing and building the executor of each served model."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from deepaas.model.execution import Executor, InProcessExecutor
from deepaas.model.loading import ModelSpec
from deepaas.model.workers import ProcessPool


def build_executors(
    specs: Sequence[ModelSpec],
    *,
    workers: int = 1,
    warm: bool = True,
    max_queue: int = 0,
    predict_timeout: float = 0,
    worker_envs: dict[str, list[dict[str, str]]] | None = None,
    log_level: int = logging.INFO,
) -> dict[str, Executor]:
    """One executor per model: in-process for ``workers == 0``, else processes.

    ``worker_envs`` gives, per model, each worker's extra environment (the
    device plan: ``CUDA_VISIBLE_DEVICES``); its length overrides ``workers``.
    """
    if workers < 0:
        raise ValueError(f"--workers must be >= 0 (got {workers})")
    executors: dict[str, Executor] = {}
    for spec in specs:
        envs = (worker_envs or {}).get(spec.name)
        if workers == 0 and not envs:
            executors[spec.name] = InProcessExecutor(
                spec, warm=warm, max_queue=max_queue, call_timeout=predict_timeout
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
            )
    return executors
