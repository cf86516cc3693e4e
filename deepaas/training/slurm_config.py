"""Building the SLURM training backend from deepaas-run's ``--slurm-*`` options."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepaas.engine.devices import read_need
from deepaas.training.slurm import SlurmBackend
from deepaas.training.slurm_commands import SlurmSettings, check_cluster
from deepaas.training.store import DATABASE_NAME, TrainingStore

LOG = logging.getLogger(__name__)

#: Where job directories live under the state directory (as for local ones).
JOBS_DIR = "trainings"


def settings_from_config(conf: Any) -> SlurmSettings:
    """The ``--slurm-*`` options as :class:`SlurmSettings`."""
    return SlurmSettings(
        partition=conf.slurm_partition or "",
        account=conf.slurm_account or "",
        qos=conf.slurm_qos or "",
        time=conf.slurm_time or "",
        cpus=conf.slurm_cpus,
        mem=conf.slurm_mem or "",
        gpu_request=conf.slurm_gpu_request,
        sbatch_lines=tuple(conf.slurm_sbatch_line),
        setup=tuple(conf.slurm_setup),
        python=conf.slurm_python or "",
        poll_interval=conf.slurm_poll_interval,
    )


def slurm_backend_from_config(
    executors: Mapping[str, Any], conf: Any, state_dir: Path | str, log_level: int
) -> SlurmBackend | None:
    """The backend for ``--train-backend slurm`` (None for local).

    Checks at once that SLURM answers and knows the partition, so that a
    bad configuration stops deepaas-run before it serves anything.
    """
    if getattr(conf, "train_backend", "local") != "slurm":
        return None
    settings = settings_from_config(conf)
    check_cluster(settings)

    def gpus_of(model: str) -> int:
        executor = executors.get(model)
        description = getattr(executor, "description", None)
        resources = getattr(description, "resources", None) or {}
        return read_need(model, resources).count if resources else 0

    directory = Path(state_dir).expanduser().absolute()
    LOG.info(
        "trainings: submitted to SLURM (%s)",
        ", ".join(
            f"{k}={v}"
            for k, v in (
                ("partition", settings.partition),
                ("account", settings.account),
                ("time", settings.time),
            )
            if v
        )
        or "SLURM's defaults",
    )
    return SlurmBackend(
        directory,
        TrainingStore(directory / DATABASE_NAME),
        settings,
        jobs_dir=JOBS_DIR,
        cancel_grace=conf.train_cancel_grace,
        log_level=log_level,
        max_log_bytes=getattr(conf, "train_log_max_bytes", 0),
        gpus_of=gpus_of,
    )
