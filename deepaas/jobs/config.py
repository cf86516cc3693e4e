"""Building the prediction job service from deepaas-run's options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepaas.engine.devices import read_need
from deepaas.jobs.service import PredictJobService
from deepaas.jobs.slurm import SlurmJobs
from deepaas.log import numeric_level
from deepaas.training.config import default_state_dir
from deepaas.training.slurm_config import settings_from_config


def job_service_from_config(
    executors: Mapping[str, Any],
    conf: Any,
    envs: Mapping[str, Any] | None = None,
) -> PredictJobService | None:
    """The job service ``deepaas-run`` serves; None with predict switched off.

    Jobs share the trainings' state directory, store, retention and
    backend: with ``--train-backend slurm`` each job is a SLURM job.
    ``envs``: the device plan's worker environments, whose devices a local
    job's provenance record names.  Nothing touches the disk before the
    service's ``start()``.
    """
    if conf is None:
        return PredictJobService(default_state_dir())
    if not conf.predict_endpoint:
        return None
    state_dir = conf.state_dir or default_state_dir()
    slurm = None
    if getattr(conf, "train_backend", "local") == "slurm":

        def gpus_of(model: str) -> int:
            description = getattr(executors.get(model), "description", None)
            resources = getattr(description, "resources", None) or {}
            return read_need(model, resources).count if resources else 0

        slurm = SlurmJobs(
            state_dir,
            settings_from_config(conf),
            log_level=numeric_level(str(conf.log_level), debug=conf.debug),
            gpus_of=gpus_of,
        )
    return PredictJobService(
        state_dir,
        max_jobs=conf.max_predict_jobs,
        max_stored=conf.max_stored_predict_jobs,
        max_concurrent=conf.max_concurrent_predict_jobs,
        keep=conf.keep_trainings,
        keep_days=conf.keep_trainings_days,
        slurm=slurm,
        worker_envs=envs,
    )
