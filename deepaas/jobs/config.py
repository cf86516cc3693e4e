"""Building the prediction job service from its settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepaas.jobs.service import PredictJobService
from deepaas.jobs.slurm import SlurmJobs
from deepaas.training.backends.slurm.config import gpus_of_executors
from deepaas.training.settings import PredictJobSettings


def job_service_from_settings(
    executors: Mapping[str, Any],
    settings: PredictJobSettings | None,
    envs: Mapping[str, Any] | None = None,
) -> PredictJobService | None:
    """The job service ``deepaas-run`` serves; None with predict switched off.

    ``settings`` is None when the predict endpoint is off.  Jobs share the
    trainings' state directory, store, retention and backend: with
    ``--train-backend slurm`` each job is a SLURM job.  ``envs``: the
    device plan's worker environments, whose devices a local job's
    provenance record names.  Nothing touches the disk before the
    service's ``start()``.
    """
    if settings is None:
        return None
    slurm = None
    if settings.backend == "slurm":
        slurm = SlurmJobs(
            settings.state_dir,
            settings.slurm,
            log_level=settings.log_level,
            gpus_of=gpus_of_executors(executors),
        )
    return PredictJobService(
        settings.state_dir,
        max_jobs=settings.max_jobs,
        max_stored=settings.max_stored,
        max_concurrent=settings.max_concurrent,
        keep=settings.keep,
        keep_days=settings.keep_days,
        slurm=slurm,
        worker_envs=envs,
    )
