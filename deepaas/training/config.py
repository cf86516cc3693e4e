"""Building the training service from deepaas-run's options."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepaas.log import numeric_level
from deepaas.model.loading import ModelSpec
from deepaas.training.service import TrainingService
from deepaas.training.slurm_config import slurm_backend_from_config

#: Key of a model's training environment in the device plan's ``envs``.
TRAINING_ENV_PREFIX = "__training__:"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/deepaas``, else ``~/.local/state/deepaas``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "deepaas"


def training_service_from_config(
    specs: Sequence[ModelSpec],
    executors: Mapping[str, Any],
    conf: Any,
    envs: Mapping[str, Any] | None,
) -> TrainingService | None:
    """The training service ``deepaas-run`` serves, or None with trainings off.

    ``envs`` may hold, under ``"__training__:<model>"``, the environment of
    that model's training processes (e.g. ``CUDA_VISIBLE_DEVICES``), set
    before the model is imported.  Nothing touches the disk before the
    service's ``start()``.
    """
    if conf is None:
        return TrainingService(default_state_dir())
    if not conf.train_endpoint:
        return None
    training_envs: dict[str, dict[str, str]] = {}
    for spec in specs:
        env = (envs or {}).get(TRAINING_ENV_PREFIX + spec.name)
        if isinstance(env, list):
            env = env[0] if env else None
        if env:
            training_envs[spec.name] = {str(k): str(v) for k, v in env.items()}
    level = numeric_level(str(conf.log_level), debug=conf.debug)
    return TrainingService(
        conf.state_dir or default_state_dir(),
        max_concurrent=conf.max_concurrent_trainings,
        max_trainings=conf.max_trainings,
        timeout=conf.train_timeout,
        cancel_grace=conf.train_cancel_grace,
        keep=conf.keep_trainings,
        keep_days=conf.keep_trainings_days,
        training_envs=training_envs,
        log_level=level,
        max_log_bytes=conf.train_log_max_bytes,
        slurm=slurm_backend_from_config(
            executors, conf, conf.state_dir or default_state_dir(), level
        ),
    )
