"""Building the training service, and its backend, from its settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deepaas.engine.devices import TRAINING_KEY
from deepaas.model.loading import ModelSpec
from deepaas.training.backends import TrainingBackend
from deepaas.training.backends.local import LocalBackend
from deepaas.training.backends.slurm.config import slurm_backend_from_settings
from deepaas.training.service import TrainingService
from deepaas.training.settings import TrainingSettings


def training_service_from_settings(
    specs: Sequence[ModelSpec],
    executors: Mapping[str, Any],
    settings: TrainingSettings | None,
    envs: Mapping[str, Any] | None,
) -> TrainingService | None:
    """The training service ``deepaas-run`` serves, or None with trainings off.

    ``settings`` is None when the train endpoints are off.  ``envs`` may
    hold, under ``TRAINING_KEY + "<model>"``, the environment of that
    model's training processes (e.g. ``CUDA_VISIBLE_DEVICES``), set before
    the model is imported.  Nothing touches the disk before the service's
    ``start()``.
    """
    if settings is None:
        return None
    return TrainingService(
        settings.state_dir,
        backend=backend_from_settings(specs, executors, settings, envs),
        keep=settings.keep,
        keep_days=settings.keep_days,
        max_log_bytes=settings.max_log_bytes,
    )


def backend_from_settings(
    specs: Sequence[ModelSpec],
    executors: Mapping[str, Any],
    settings: TrainingSettings,
    envs: Mapping[str, Any] | None,
) -> TrainingBackend:
    """The backend ``--train-backend`` names: SLURM jobs, or local processes
    in the environments ``envs`` gives each model's trainings."""
    slurm = slurm_backend_from_settings(executors, settings)
    if slurm is not None:
        return slurm
    training_envs: dict[str, dict[str, str]] = {}
    for spec in specs:
        env = (envs or {}).get(TRAINING_KEY + spec.name)
        if isinstance(env, list):
            env = env[0] if env else None
        if env:
            training_envs[spec.name] = {str(k): str(v) for k, v in env.items()}
    return LocalBackend(
        max_concurrent=settings.max_concurrent,
        max_trainings=settings.max_trainings,
        timeout=settings.timeout,
        cancel_grace=settings.cancel_grace,
        training_envs=training_envs,
        log_level=settings.log_level,
        max_log_bytes=settings.max_log_bytes,
    )
