"""The typed settings of each layer, built from deepaas-run's options.

This is the one place where the oslo.config object is read: every option
is copied once, under the name its layer uses, into that layer's frozen
dataclass, which checks it.  The layers below never see the config object.

The training and job settings are built by the HTTP half of deepaas-run
(:mod:`deepaas.cmd._serving`), after the workers have started: importing
:mod:`deepaas.training` takes a few tens of milliseconds that the workers
spend importing the model meanwhile.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from oslo_config import cfg

from deepaas.log import numeric_level

if TYPE_CHECKING:
    from deepaas.training.settings import (
        PredictJobSettings,
        SlurmSettings,
        TrainingSettings,
    )


def _log_level(conf: cfg.ConfigOpts) -> int:
    return numeric_level(str(conf.log_level), debug=conf.debug)


def _state_dir(conf: cfg.ConfigOpts) -> Path:
    from deepaas.training.settings import default_state_dir

    return Path(conf.state_dir) if conf.state_dir else default_state_dir()


def slurm_settings(conf: cfg.ConfigOpts) -> SlurmSettings:
    """The ``--slurm-*`` options."""
    from deepaas.training.settings import SlurmSettings

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


def training_settings(conf: cfg.ConfigOpts) -> TrainingSettings | None:
    """The trainings' settings; None with ``--train-endpoint false``."""
    from deepaas.training.settings import TrainingSettings

    if not conf.train_endpoint:
        return None
    return TrainingSettings(
        state_dir=_state_dir(conf),
        max_concurrent=conf.max_concurrent_trainings,
        max_trainings=conf.max_trainings,
        timeout=conf.train_timeout,
        cancel_grace=conf.train_cancel_grace,
        keep=conf.keep_trainings,
        keep_days=conf.keep_trainings_days,
        max_log_bytes=conf.train_log_max_bytes,
        log_level=_log_level(conf),
        backend=conf.train_backend,
        slurm=slurm_settings(conf),
    )


def predict_job_settings(conf: cfg.ConfigOpts) -> PredictJobSettings | None:
    """The prediction jobs' settings; None with ``--predict-endpoint false``."""
    from deepaas.training.settings import PredictJobSettings

    if not conf.predict_endpoint:
        return None
    return PredictJobSettings(
        state_dir=_state_dir(conf),
        max_jobs=conf.max_predict_jobs,
        max_stored=conf.max_stored_predict_jobs,
        max_concurrent=conf.max_concurrent_predict_jobs,
        keep=conf.keep_trainings,
        keep_days=conf.keep_trainings_days,
        log_level=_log_level(conf),
        backend=conf.train_backend,
        slurm=slurm_settings(conf),
    )
