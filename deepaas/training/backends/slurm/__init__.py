"""The SLURM training backend (``--train-backend slurm``): each training is
one batch job, which outlives the server that submitted it.

:mod:`.backend` submits and watches the jobs, :mod:`.commands` speaks to
SLURM's command-line tools, :mod:`.files` holds the files through which a
job and the servers talk, :mod:`.job` is what a job runs, and
:mod:`.config` builds the backend from the training settings.  The
prediction jobs of :mod:`deepaas.jobs.slurm` use the same commands and
files.
"""

from deepaas.training.backends.slurm.backend import (
    SlurmBackend,
    SlurmTraining,
    slurm_job_id,
    with_slurm_details,
)

__all__ = ["SlurmBackend", "SlurmTraining", "slurm_job_id", "with_slurm_details"]
