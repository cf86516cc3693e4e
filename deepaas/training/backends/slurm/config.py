"""Building the SLURM training backend from the training settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from deepaas.engine.devices import read_need
from deepaas.training.backends.slurm.backend import SlurmBackend
from deepaas.training.backends.slurm.commands import check_cluster
from deepaas.training.settings import TrainingSettings
from deepaas.training.store import DATABASE_NAME, TrainingStore

#: The logger keeps the name it had before the backends moved, so that a
#: logging set-up (or a search of the logs) naming it still finds its lines.
LOG = logging.getLogger("deepaas.training.slurm_config")

#: Where job directories live under the state directory (as for local ones).
JOBS_DIR = "trainings"


def gpus_of_executors(executors: Mapping[str, Any]) -> Any:
    """A function giving the GPUs a model's declared resources ask for."""

    def gpus_of(model: str) -> int:
        description = getattr(executors.get(model), "description", None)
        resources = getattr(description, "resources", None) or {}
        return read_need(model, resources).count if resources else 0

    return gpus_of


def slurm_backend_from_settings(
    executors: Mapping[str, Any], settings: TrainingSettings
) -> SlurmBackend | None:
    """The backend for ``--train-backend slurm`` (None for local).

    Checks at once that SLURM answers and knows the partition, so that a
    bad configuration stops deepaas-run before it serves anything.
    """
    if settings.backend != "slurm":
        return None
    slurm = settings.slurm
    check_cluster(slurm)
    directory = settings.state_dir.expanduser().absolute()
    LOG.info(
        "trainings: submitted to SLURM (%s)",
        ", ".join(
            f"{k}={v}"
            for k, v in (
                ("partition", slurm.partition),
                ("account", slurm.account),
                ("time", slurm.time),
            )
            if v
        )
        or "SLURM's defaults",
    )
    return SlurmBackend(
        directory,
        TrainingStore(directory / DATABASE_NAME),
        slurm,
        jobs_dir=JOBS_DIR,
        cancel_grace=settings.cancel_grace,
        log_level=settings.log_level,
        max_log_bytes=settings.max_log_bytes,
        gpus_of=gpus_of_executors(executors),
    )
